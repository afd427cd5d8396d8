"""Budgeted select's phases on the game alone: a block scan, lazy greedy removal, then swap moves."""

from __future__ import annotations

import math

import numpy as np

from shapprune.estimators.budget import mask_key
from shapprune.select.blocks import contiguous_blocks
from shapprune.select.moves import fit_ranker
from shapprune.select.spend import BudgetPlan, Spend


def block_scan(spend: Spend, n_layers: int, k: int, cap: int) -> None:
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


def block_cap(plan: BudgetPlan, share: int, k: int, singles_cost: int) -> int:
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
    current, order = np.ones(n_layers, dtype=bool), []
    value = full_target(spend, n_layers)
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


def full_target(spend: Spend, n_layers: int) -> float:
    """The full model's target, the baseline of the first step's marginals: from its known value, else 0 for a
    log-utility (``ppl_ratio`` is 1 there by definition), else measured (one evaluation)."""
    full = np.ones((1, n_layers), dtype=bool)
    values = spend.game.free_values()
    if mask_key(full[0]) not in values and not spend.log_utility:
        spend.measure(full)
        values = spend.game.free_values()
    if mask_key(full[0]) in values:
        return float(spend.target([values[mask_key(full[0])]])[0])
    return 0.0


def climb(spend: Spend, k: int, plan: BudgetPlan) -> tuple[bool, bool]:
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


def plain_phases(spend: Spend, n_layers: int, k: int, share: int, plan: BudgetPlan) -> tuple[list[str], bool, tuple]:
    """Block scan, lazy greedy (or leave-one-out) and swaps on the game; returns (phases, reduced, climb's result)."""
    singles = ~np.eye(n_layers, dtype=bool)  # [L, L]
    cap = block_cap(plan, share, k, spend.game.cost(singles))
    if cap:
        block_scan(spend, n_layers, k, cap)
    phases = ["blocks"] if cap else []
    width = 0 if k == 1 else min(plan.greedy_width, (spend.left() - spend.game.cost(singles)) // (k - 1))
    if width >= plan.min_width:
        lazy_greedy(spend, n_layers, k, width)
        phases.append(f"lazy greedy (width {width})")
    elif k > 1 and spend.left() - spend.game.cost(singles) >= plan.min_swaps:
        spend.measure(singles)
        phases.append("leave-one-out")
    return phases + ["swaps"], k > 1 and width < plan.min_width, climb(spend, k, plan)
