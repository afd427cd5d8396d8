"""Stratified sampling of marginal contributions (Maleki et al. 2013): the strata are (player, coalition size).

``phi_i = 1/L sum_s E[v(S + i) - v(S)]`` over coalitions ``S`` of the other players with ``|S| = s``.
Draws cycle through the players, each taking the next size of its own random order of sizes, one
marginal contribution (two coalitions, fewer when cached) at a time, until the next one no longer fits. A player
whose every size was drawn gets the stratified mean; otherwise the plain mean of its draws, which is
also unbiased because its sizes are a uniform random subset.
"""

from __future__ import annotations

import math

import numpy as np

from shapprune.estimators.base import EstimateResult
from shapprune.estimators.budget import as_budgeted
from shapprune.sampling import random_masks
from shapprune.types import Game


def estimate(game: Game, budget: int, rng: np.random.Generator) -> EstimateResult:
    """Per-player, per-size stratified Monte Carlo within ``budget`` coalitions."""
    g = as_budgeted(game, budget)
    n = g.n_players
    sizes = np.stack([rng.permutation(n) for _ in range(n)])  # [L, L]: player i's size order
    draws: list[list[list[float]]] = [[[] for _ in range(n)] for _ in range(n)]  # [player][size] -> marginals
    step = 0
    while g.remaining is None or g.remaining > 0 or step < n:  # once paid up, stop (free repeats would loop)
        player, cycle = step % n, step // n
        size = int(sizes[player, cycle % n])
        base = np.insert(random_masks(n - 1, size, 1, rng), player, False, axis=1)  # [1, L]
        pair = np.concatenate([base, base])
        pair[0, player] = True
        if not g.affordable(pair) or step >= 4 * budget:
            break
        with_i, without_i = g(pair)
        draws[player][size].append(with_i - without_i)
        step += 1
    if step < n:
        raise ValueError(f"budget {budget} is too small for one marginal contribution per player")
    values, stderr = np.zeros(n), np.zeros(n)
    for i in range(n):
        counts = np.array([len(d) for d in draws[i]])
        if counts.min() >= 1:
            means = np.array([np.mean(d) for d in draws[i]])
            values[i] = means.mean()
            spread = np.array([np.var(d, ddof=1) if len(d) > 1 else np.nan for d in draws[i]])
            if np.isfinite(spread).any():  # a size drawn once borrows the player's mean spread
                spread = np.where(np.isfinite(spread), spread, np.nanmean(spread))
            stderr[i] = math.sqrt(np.sum(spread / counts)) / n
        else:
            flat = np.concatenate([d for d in draws[i] if d])
            values[i] = flat.mean()
            stderr[i] = flat.std(ddof=1) / math.sqrt(len(flat)) if len(flat) > 1 else np.inf
    return EstimateResult(
        values,
        stderr,
        g.n_evaluations,
        "stratified",
        n_evaluations=g.n_evaluations,
        diagnostics={"marginals": step},
    )
