"""Budgeted subset search on the LLM: every evaluation counted, the initial design included.

For each ``k`` (in increasing order, each with a share of the budget proportional to what SLEB would
spend on it) the search runs these phases, each only as far as the share allows:

1. a scan of contiguous blocks of ``k`` layers (every start, or every ``s``-th start followed by the
   starts around the best one when a full scan would take more than its allowance: ``block_share`` of the
   share, or less, down to ``min_blocks`` evaluations, when that would leave no room for step 2 at
   ``min_width``; the scan never spends more than its allowance);
2. when what is left holds the leave-one-out pass (drop one layer at a time: SLEB's first step, ``L``
   evaluations) and ``min_width`` or more candidates per later step: **lazy greedy removal**, SLEB with
   each step measuring only the ``greedy_width`` kept layers whose last measured marginal value was best
   (SLEB measures all of them); else the leave-one-out pass alone, when it leaves ``min_swaps`` evaluations;
3. hill climbing by swap moves (exchange one dropped layer for one kept layer) from the best measured
   set: every move is ranked by a ridge model of the log-utility fitted on everything measured so far
   (one feature per dropped layer and per pair of adjacent dropped layers), the ``batch`` best unmeasured
   moves are measured, and the search moves to the best one when it is better.

With a screen (the game on fewer windows, ``select.screen_windows``) the phases are those of
:mod:`shapprune.select.screen` instead, screening paid from the same budget at its share of the tokens.

Evaluations are shared across ``k`` (a mask measured for one ``k`` is free for the next). Masks whose
value is known up front (already scored on this game, the full model) cost nothing and seed the search.
The choice per ``k`` is the best measured set by calibration utility; the result says how far it is
from the runner-up and whether a larger budget may change it (the last step still improved, the
runner-up is within ``close`` of it, or the share did not hold the lazy greedy pass).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from shapprune.baselines.cost import sleb_cost
from shapprune.estimators.budget import BudgetedGame, mask_key
from shapprune.select.blocks import contiguous_blocks
from shapprune.select.candidates import Candidate
from shapprune.select.moves import fit_ranker
from shapprune.select.result import Cost, Selection
from shapprune.select.screen import screen_blocks, screened_climb, screened_greedy, screened_width, verify_best
from shapprune.select.spend import Screen, Spend
from shapprune.types import Game


@dataclass(frozen=True)
class BudgetPlan:
    """How a budgeted search spends each ``k``'s share."""

    greedy_width: int = 4  # lazy greedy: candidates measured per step after the first
    min_width: int = 2  # the narrowest lazy greedy worth running (narrower: the leave-one-out pass alone)
    block_share: float = 0.6  # at most this fraction of a k's share on the coarse block scan, and
    shrink_blocks: bool = True  # less (down to min_blocks) when that fraction leaves no room for the lazy greedy
    min_blocks: int = 4  # the scan's floor: below it the scan keeps block_share and the lazy greedy is skipped
    min_swaps: int = 8  # the leave-one-out pass runs only if it leaves this many evaluations for swaps
    batch: int = 4  # swap moves measured per hill-climbing step
    ridge: float = 1e-2  # ridge penalty of the move-ranking model
    close: float = 0.01  # runner-up within this log-utility (about 1 % perplexity): the choice is close
    screen_moves: int = 32  # with a screen: swap moves screened per neighbourhood at most (the ridge model's best)

    def __post_init__(self) -> None:
        if not 0 < self.block_share <= 1:
            raise ValueError(f"select: block_share must be in (0, 1], got {self.block_share}")
        if not 1 <= self.min_width <= self.greedy_width:
            raise ValueError(f"select: min_width must be in [1, greedy_width], got {self.min_width}")
        if self.batch < 1 or self.min_swaps < 0 or self.min_blocks < 0:
            raise ValueError("select: batch must be at least 1, min_swaps and min_blocks at least 0")


def sleb_shares(budget: int, n_drops: Sequence[int], n_layers: int) -> dict[int, int]:
    """Split ``budget`` over ``n_drops``: one evaluation each, the rest in proportion to SLEB's cost at each ``k``."""
    ks = sorted(set(n_drops))
    weights = {k: sleb_cost(n_layers, k) for k in ks}
    spare = budget - len(ks)
    shares = {k: 1 + spare * w // sum(weights.values()) for k, w in weights.items()}
    for k in sorted(ks, reverse=True)[: budget - sum(shares.values())]:
        shares[k] += 1
    return shares


def _block_scan(spend: Spend, n_layers: int, k: int, cap: int) -> None:
    """Measure blocks of ``k`` layers: every start if they fit in ``cap``, else a strided scan refined at the best."""
    blocks = contiguous_blocks(n_layers, k)  # [B, L], row = first dropped layer
    if spend.game.cost(blocks) <= cap:
        spend.measure(blocks)
        return
    stride = math.ceil(len(blocks) / max(cap - 1, 1))
    starts = sorted({*range(0, len(blocks), stride), len(blocks) - 1})
    start = spend.game.n_evaluations
    spend.measure(blocks[starts], limit=max(cap, 1))
    values = spend.game.free_values()
    measured = [s for s in range(len(blocks)) if mask_key(blocks[s]) in values]
    if not measured:
        return
    best = max(measured, key=lambda s: (spend.target([values[mask_key(blocks[s])]])[0], -s))
    around = sorted(range(max(best - stride + 1, 0), min(best + stride, len(blocks))), key=lambda s: (abs(s - best), s))
    spend.measure(blocks[around], limit=cap - (spend.game.n_evaluations - start))


def _block_cap(plan: BudgetPlan, share: int, k: int, singles_cost: int) -> int:
    """Evaluations for the block scan: ``block_share`` of the share, or (``shrink_blocks``) less, down to
    ``min_blocks``, so that a lazy greedy pass of ``min_width`` or wider still fits after it."""
    cap = max(int(plan.block_share * share), 1)
    if not plan.shrink_blocks or k == 1:
        return cap
    for width in range(plan.greedy_width, plan.min_width - 1, -1):
        room = share - singles_cost - (k - 1) * width  # what the greedy pass of this width leaves for blocks
        if room >= cap:
            return cap
        if room >= plan.min_blocks:
            return room
    return cap


def lazy_greedy(spend: Spend, n_layers: int, k: int, width: int) -> list[int]:
    """Greedy removal to ``k`` layers measuring, after the leave-one-out step, only the ``width`` kept layers
    with the best last-measured marginal value; returns the removal order (shorter if the share ran out)."""
    singles = ~np.eye(n_layers, dtype=bool)  # [L, L]
    spend.measure(singles)
    values = spend.game.free_values()
    if any(mask_key(m) not in values for m in singles):
        return []
    marginal = spend.target([values[mask_key(m)] for m in singles])  # [L] the latest gain of dropping each layer
    current, value, order = np.ones(n_layers, dtype=bool), 0.0, []
    for step in range(k):
        kept = np.flatnonzero(current)
        cands = kept if step == 0 else kept[np.lexsort((kept, -marginal[kept]))][:width]
        masks = np.repeat(current[None], len(cands), axis=0)  # [c, L]
        masks[np.arange(len(cands)), cands] = False
        spend.measure(masks)
        values = spend.game.free_values()
        known = [
            (c, float(spend.target([values[mask_key(m)]])[0])) for c, m in zip(cands, masks) if mask_key(m) in values
        ]
        if not known:
            break
        for c, v in known:
            marginal[c] = v - value
        best, value = max(known, key=lambda cv: (cv[1], -cv[0]))
        current[best] = False
        order.append(int(best))
    return order


def _climb(spend: Spend, k: int, plan: BudgetPlan) -> tuple[bool, bool]:
    """Hill climbing by swap moves from the best measured ``k``-set; returns (last step improved, local optimum)."""
    improved = False
    while True:
        found = spend.frontier(k)
        if found is None:
            return improved, False
        value, moves, fresh = found
        if not fresh.any():
            return False, True  # every swap measured, none better: a verified local optimum
        if spend.left() < 1:
            return improved, False
        all_masks, all_y = spend.table()
        predicted = fit_ranker(all_masks, all_y, plan.ridge)(moves[fresh])
        order = np.argsort(-predicted, kind="stable")[: min(plan.batch, spend.left())]
        spend.measure(moves[fresh][order])
        improved = float(spend.table(k)[1].max()) > value


def _phases(spend: Spend, n_layers: int, k: int, share: int, plan: BudgetPlan) -> tuple[list[str], bool, tuple]:
    """Block scan, lazy greedy (or leave-one-out) and swaps on the game; returns (phases, reduced, climb's result)."""
    singles = ~np.eye(n_layers, dtype=bool)  # [L, L]
    cap = _block_cap(plan, share, k, spend.game.cost(singles))
    if cap:
        _block_scan(spend, n_layers, k, cap)
    phases = ["blocks"] if cap else []
    width = 0 if k == 1 else min(plan.greedy_width, (spend.left() - spend.game.cost(singles)) // (k - 1))
    if width >= plan.min_width:
        lazy_greedy(spend, n_layers, k, width)
        phases.append(f"lazy greedy (width {width})")
    elif k > 1 and spend.left() - spend.game.cost(singles) >= plan.min_swaps:
        spend.measure(singles)
        phases.append("leave-one-out")
    return phases + ["swaps"], k > 1 and width < plan.min_width, _climb(spend, k, plan)


def _screened_phases(
    spend: Spend, n_layers: int, k: int, share: int, plan: BudgetPlan
) -> tuple[list[str], bool, tuple]:
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
        phases, reduced, climb = _phases(spend, n_layers, k, spend.left(), plan)
        return ["screen: nothing of size k", *phases], reduced, climb
    climb = screened_climb(spend, k, plan.batch, plan.ridge, plan.screen_moves)
    phases = ["screen: blocks", f"screened greedy (width {width}, {steps} of {k} steps)", "screened swaps"]
    return phases, steps < k, climb


def budgeted_select(
    game: Game,
    n_drops: Sequence[int],
    budget: int,
    rng: np.random.Generator,
    known: Mapping[bytes, float] | None = None,
    log_utility: bool = True,
    plan: BudgetPlan = BudgetPlan(),
    screen: Screen | None = None,
) -> Selection:
    """Choose the layers to drop for every ``k`` in ``n_drops`` with at most ``budget`` evaluations of ``game``.

    ``known`` maps :func:`mask_key` to values of ``game`` known without evaluation (the full model, masks
    scored earlier on the same game); ``log_utility``: rank by the log of the value (``ppl_ratio``) or the
    value itself (``neg_log_ppl``). ``screen``: the same game on fewer windows; its evaluations, each paid at
    ``screen.cost`` of a full one, replace the block scan and greedy pass on the game (screen, then verify:
    :mod:`shapprune.select.screen`). The search is deterministic; ``rng`` is taken for the estimator API.
    """
    del rng  # deterministic: ties go to the lower layer / earlier mask
    n_layers = game.n_players
    ks = sorted({int(k) for k in n_drops})
    bad = [k for k in ks if not 1 <= k < n_layers]
    if bad or not ks:
        raise ValueError(f"select.n_drops: {bad or 'empty'} outside [1, {n_layers - 1}] for {n_layers} layers")
    if budget < len(ks):
        raise ValueError(f"select.budget must be at least 1 evaluation per k searched ({len(ks)}), got {budget}")
    spend = Spend(BudgetedGame(game, budget, known=dict(known or {})), log_utility, screen)
    chosen, costs, notes, pool = {}, {}, {}, []
    for i, k in enumerate(ks):
        rest = ks[i:]
        share = sleb_shares(math.floor(budget - spend.spent() + 1e-9), rest, n_layers)[k]
        spend.limit = spend.spent() + share
        before = spend.game.n_evaluations, len(spend.game.scored()[1])
        screened = len(spend.screen.scored()[1]) if spend.screen else 0
        run = _screened_phases if spend.screen is not None else _phases
        phases, reduced, (improved, optimum) = run(spend, n_layers, k, share, plan)
        new_masks = spend.game.scored()[0][before[1] :]
        screen_masks = spend.screen.scored()[0][screened:] if spend.screen else np.zeros((0, n_layers), bool)
        costs[k] = Cost(
            spend.game.n_evaluations - before[0], int(new_masks.sum()),
            len(screen_masks), int(screen_masks.sum()), spend.screen_cost,
        )  # fmt: skip
        masks, y = spend.table(k)
        if not len(masks):
            raise ValueError(f"select.budget: {budget} evaluations measured no set of {k} layers; raise the budget")
        order = np.lexsort((np.arange(len(y)), -y))
        margin = float(y[order[0]] - y[order[1]]) if len(y) > 1 else math.inf
        notes[k] = {
            "phases": phases,
            "margin": margin,
            "close": margin < plan.close,
            "still_improving": improved,
            "local_optimum": optimum,
            "reduced": reduced,  # the share did not hold the (screened) greedy pass
            "larger_budget_may_change": bool(improved or margin < plan.close or reduced) and not optimum,
        }
        values = spend.game.free_values()
        for row in order:  # every measured set of k layers, best first
            cand = Candidate(masks[row], ["budgeted"], math.nan, 0)
            cand.calibration, cand.verified = float(values[cand.key]), True
            pool.append(cand)
            if row == order[0]:
                chosen[k] = cand
    return Selection(
        n_layers=n_layers,
        candidates=pool,
        chosen=chosen,
        chosen_by=dict.fromkeys(chosen, "calibration"),
        n_calibration_evaluations=spend.game.n_evaluations,
        n_validation_evaluations=0,
        budget=budget,
        rounds=1,
        kept_layers=round(sum(c.kept_layers + c.screen_cost * c.screen_kept_layers for c in costs.values())),
        costs=costs,
        n_screen_evaluations=spend.screen.n_evaluations if spend.screen else 0,
        notes=notes,
    )
