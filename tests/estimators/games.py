"""Small games with known Shapley values shared by the estimator tests."""

from __future__ import annotations

import numpy as np

from shapprune.game import PairwiseGame
from shapprune.shapley import all_masks
from shapprune.table_game import TableGame


def pairwise(n: int, seed: int, scale: float = 0.3) -> PairwiseGame:
    """Random weights and symmetric interactions (closed-form Shapley values)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=n)
    upper = np.triu(rng.normal(scale=scale, size=(n, n)), 1)
    return PairwiseGame(w, upper + upper.T)


def weighted_majority(weights: list[float], quota: float) -> TableGame:
    """``v(S) = 1`` iff the weights in S reach ``quota``: far from any quadratic surrogate."""
    masks = all_masks(len(weights))
    return TableGame((masks @ np.asarray(weights, float) >= quota).astype(float))


def layer_like(n: int, seed: int) -> TableGame:
    """``exp(-(sum of dropped costs) - dropped-pair interactions)``: shaped like a PPL-ratio layer game."""
    rng = np.random.default_rng(seed)
    cost = rng.gamma(2.0, 0.15, size=n)
    inter = np.triu(rng.normal(0.0, 0.05, size=(n, n)), 1)
    dropped = (~all_masks(n)).astype(float)  # [2**n, n]
    return TableGame(np.exp(-(dropped @ cost) - np.einsum("mi,ij,mj->m", dropped, inter, dropped)))
