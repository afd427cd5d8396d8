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

import numpy as np

from shapprune.baselines.cost import sleb_cost
from shapprune.config import ConfigError
from shapprune.estimators.budget import BudgetedGame
from shapprune.select.candidates import Candidate
from shapprune.select.plain import plain_phases
from shapprune.select.result import Cost, Selection
from shapprune.select.screen import screened_phases
from shapprune.select.spend import BudgetPlan, Screen, Spend
from shapprune.types import Game


def sleb_shares(budget: int, n_drops: Sequence[int], n_layers: int) -> dict[int, int]:
    """Split ``budget`` over ``n_drops``: one evaluation each, the rest in proportion to SLEB's cost at each ``k``."""
    ks = sorted(set(n_drops))
    weights = {k: sleb_cost(n_layers, k) for k in ks}
    spare = budget - len(ks)
    shares = {k: 1 + spare * w // sum(weights.values()) for k, w in weights.items()}
    for k in sorted(ks, reverse=True)[: budget - sum(shares.values())]:
        shares[k] += 1
    return shares


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
        raise ConfigError(f"select.budget must be at least 1 evaluation per k searched ({len(ks)}), got {budget}")
    spend = Spend(BudgetedGame(game, budget, known=dict(known or {})), log_utility, screen)
    chosen, costs, notes, pool = {}, {}, {}, []
    for i, k in enumerate(ks):
        rest = ks[i:]
        share = sleb_shares(math.floor(budget - spend.spent() + 1e-9), rest, n_layers)[k]
        spend.limit = spend.spent() + share
        before = spend.game.n_evaluations, len(spend.game.scored()[1])
        screened = len(spend.screen.scored()[1]) if spend.screen else 0
        run = screened_phases if spend.screen is not None else plain_phases
        phases, reduced, (improved, optimum) = run(spend, n_layers, k, share, plan)
        new_masks = spend.game.scored()[0][before[1] :]
        screen_masks = spend.screen.scored()[0][screened:] if spend.screen else np.zeros((0, n_layers), bool)
        costs[k] = Cost(
            spend.game.n_evaluations - before[0], int(new_masks.sum()),
            len(screen_masks), int(screen_masks.sum()), spend.screen_cost,
        )  # fmt: skip
        masks, y = spend.table(k)
        if not len(masks):
            raise ConfigError(f"select.budget: {budget} evaluations measured no set of {k} layers; raise the budget")
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
