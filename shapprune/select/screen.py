"""Screen-then-verify: budgeted select's phases on a cheaper copy of the game, the best then verified on the game.

A screening game is the same model on a few of the calibration windows; one of its evaluations costs its
share of the tokens (``cost``, e.g. 0.1 for 1 window of 10) in units of a full evaluation. Per ``k``, every
contiguous block is screened and the best verified; SLEB's greedy removal runs on the full game, but each step
screens every candidate and measures only the few the screen ranks best; then hill climbing goes on by swap
moves, each neighbourhood screened and its best moves verified. Every decision and the choice are made on
the full game's values, as SLEB's are: the screen only decides what gets measured.
"""

from __future__ import annotations

import numpy as np

from shapprune.estimators.budget import BudgetedGame, mask_key
from shapprune.select.blocks import contiguous_blocks
from shapprune.select.moves import fit_ranker
from shapprune.select.plain import plain_phases
from shapprune.select.spend import BudgetPlan, Spend
from shapprune.types import Mask


def screened_keys(game: BudgetedGame, masks: Mask) -> list[bytes]:
    """Keys of the distinct ``masks`` that ``game`` does not know yet, in order."""
    known = game.free_values()
    return list(dict.fromkeys(k for k in map(mask_key, masks) if k not in known))


def screened_greedy(spend: Spend, n_layers: int, k: int, width: int) -> int:
    """SLEB's greedy removal to ``k`` layers on the game, each step's candidates screened first: every kept layer's
    removal is screened, the ``width`` best by the screen are measured on the game, and the best of those by the
    game's value is removed (SLEB's rule, where SLEB measures every candidate on the game). Returns the steps
    completed (fewer when the budget ran out)."""
    current = np.ones(n_layers, dtype=bool)
    for step in range(k):
        kept = np.flatnonzero(current)
        masks = np.repeat(current[None], len(kept), axis=0)  # [c, L]
        masks[np.arange(len(kept)), kept] = False
        spend.screen_measure(masks, whole=True)
        if screened_keys(spend.screen, masks):
            return step  # the budget did not hold this step's screening
        best = np.lexsort((kept, -spend.screen_target(masks)))[:width]  # the screen's best, lower layer on ties
        spend.measure(masks[best])
        values = spend.game.free_values()
        measured = [i for i in best if mask_key(masks[i]) in values]
        if not measured:
            return step
        pick = max(measured, key=lambda i: (float(spend.target([values[mask_key(masks[i])]])[0]), -kept[i]))
        current[kept[pick]] = False
    return k


def screened_width(share: float, n_layers: int, k: int, cost: float, most: int) -> int:
    """The widest screened greedy pass (at most ``most`` candidates measured per step, at least 1) that fits in
    ``share`` beside the screening of every block and every step, and one block verified."""
    screening = cost * ((n_layers - k + 1) + sum(n_layers - step for step in range(k)))
    return int(max(1, min(most, (share - screening - 1) // k)))


def screen_blocks(spend: Spend, n_layers: int, k: int) -> None:
    """Every contiguous block of ``k`` layers on the screen, if the screening allowance holds them all."""
    spend.screen_measure(contiguous_blocks(n_layers, k), whole=True)


def verify_best(spend: Spend, k: int, count: int) -> int:
    """Measure on the full game the ``count`` best screened ``k``-sets not measured yet; returns how many."""
    masks, y = spend.screen_table(k)
    known = spend.game.free_values()
    order = [i for i in np.lexsort((np.arange(len(y)), -y)) if mask_key(masks[i]) not in known]
    return spend.measure(masks[order[:count]]) if order and count > 0 else 0


def screened_climb(spend: Spend, k: int, batch: int, ridge: float, screen_moves: int) -> tuple[bool, bool]:
    """Hill climbing from the best verified ``k``-set: screen its unscreened swap moves (at most ``screen_moves``
    and what leaves one verification; the best by a ridge model of the screened values when more are left),
    verify the best screened moves ``batch`` at a time, move when one is better; stops when the budget is spent.

    Returns (the last verified batch improved, every swap of the final set was verified on the game).
    """
    improved = False
    while True:
        found = spend.frontier(k)
        if found is None:
            return improved, False
        value, moves, todo = found  # moves: [k (L - k), L]
        if not todo.any():
            return False, True
        if spend.left() < 1:
            return improved, False
        fresh = set(screened_keys(spend.screen, moves))
        added = 0
        if fresh:
            unscreened = np.stack([m for m in moves if mask_key(m) in fresh])  # [u, L]
            room = min(int((spend.room() - 1) / spend.screen_cost), screen_moves)  # leaves one verification
            if len(unscreened) > room:
                s_masks, s_y = spend.screen_table()
                order = np.argsort(-fit_ranker(s_masks, s_y, ridge)(unscreened), kind="stable")
                unscreened = unscreened[order[:room]]
            added = spend.screen_measure(unscreened)
        screened = spend.screen.free_values()
        ranked = [m for m in moves[todo] if mask_key(m) in screened]  # unverified, screened moves
        if not ranked:
            if added:
                continue
            return improved, False
        ranked.sort(key=lambda m: -spend.screen_target(m[None])[0])
        spend.measure(np.stack(ranked[: min(batch, int(spend.left()))]))
        improved = float(spend.table(k)[1].max()) > value


def screened_phases(spend: Spend, n_layers: int, k: int, share: int, plan: BudgetPlan) -> tuple[list[str], bool, tuple]:
    """Every block screened, SLEB's greedy pass on the game with each step screened (as wide as the share allows,
    up to ``greedy_width``), the best screened block verified, then screened swaps; returns (phases, reduced,
    climb's result)."""
    width = screened_width(share, n_layers, k, spend.screen_cost, plan.greedy_width)
    limit = spend.limit
    spend.limit = spend.spent() + share - 1  # one evaluation kept for the best block
    screen_blocks(spend, n_layers, k)
    steps = screened_greedy(spend, n_layers, k, width)
    spend.limit = limit
    verify_best(spend, k, 1)  # the best screened block (or k-set) not measured yet
    if not len(spend.table(k)[0]):  # the share measured no k-set: the unscreened phases with what is left
        phases, reduced, climb = plain_phases(spend, n_layers, k, spend.left(), plan)
        return ["screen: nothing of size k", *phases], reduced, climb
    climb = screened_climb(spend, k, plan.batch, plan.ridge, plan.screen_moves)
    phases = ["screen: blocks", f"screened greedy (width {width}, {steps} of {k} steps)", "screened swaps"]
    return phases, steps < k, climb
