"""Permutation Monte Carlo with antithetic pairs (a permutation and its reverse): the plain baseline.

Each permutation adds the players one by one from the empty coalition to the full one and records each
player's marginal contribution; the pair's average is one sample. Permutations are drawn while the next
pair still fits in the budget (coalitions already scored are free).
"""

from __future__ import annotations

import math

import numpy as np

from shapprune.estimators.base import EstimateResult
from shapprune.estimators.budget import as_budgeted
from shapprune.types import Game, Mask


def chain(order: np.ndarray) -> Mask:
    """Coalitions along a permutation: ``bool[L + 1, L]``, row j keeps the first j players of ``order``."""
    n = len(order)
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n)
    return ranks[None, :] < np.arange(n + 1)[:, None]


def marginals(order: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each player's marginal contribution along ``order`` from the chain's values ``float[L + 1]``."""
    out = np.empty(len(order))
    out[order] = np.diff(values)
    return out


def estimate(game: Game, budget: int, rng: np.random.Generator, *, antithetic: bool = True) -> EstimateResult:
    """Mean marginal contribution over (antithetic pairs of) uniformly random permutations."""
    g = as_budgeted(game, budget)
    n = g.n_players
    samples = []
    while len(samples) < budget and g.remaining:  # stop once paid up (free repeats would loop)
        order = rng.permutation(n)
        orders = [order, order[::-1]] if antithetic else [order]
        masks = np.concatenate([chain(o) for o in orders])  # [(L + 1) * len(orders), L]
        if not g.affordable(masks):
            break
        values = g(masks).reshape(len(orders), n + 1)
        samples.append(np.mean([marginals(o, v) for o, v in zip(orders, values)], axis=0))
    if not samples:
        raise ValueError(
            f"budget {budget} is too small for one {'pair of permutations' if antithetic else 'permutation'}"
        )
    arr = np.array(samples)  # [m, L]
    stderr = arr.std(axis=0, ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else np.full(n, np.inf)
    return EstimateResult(
        arr.mean(axis=0),
        stderr,
        g.n_evaluations,
        "permutation",
        n_evaluations=g.n_evaluations,
        diagnostics={"permutations": len(arr) * (2 if antithetic else 1)},
    )
