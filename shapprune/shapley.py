"""Shapley values and semivalues of layer games: exact enumeration and sampled readouts.

Readouts take a ``value`` function (a game, or a surrogate's predictor), a sample count and an
``np.random.Generator``, and return a :class:`ShapleyResult` with per-layer standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from shapprune.sampling import random_masks, split_counts, stratified_masks
from shapprune.types import Mask, Utility

ValueFn = Callable[[Mask], Utility]


@dataclass(frozen=True)
class ShapleyResult:
    """Per-layer contribution estimates and their standard errors."""

    values: np.ndarray  # float[L]
    stderr: np.ndarray  # float[L]
    n_samples: int  # value-function evaluations per layer
    method: str

    def ranking(self) -> np.ndarray:
        """Layer indices from lowest to highest contribution (ties by index)."""
        return np.lexsort((np.arange(len(self.values)), self.values))


def all_masks(n_players: int) -> Mask:
    """Every coalition of ``n_players`` as ``bool[2**n, n]`` (bit i of the row index = player i)."""
    idx = np.arange(2**n_players)[:, None]
    return ((idx >> np.arange(n_players)) & 1).astype(bool)


def exact_shapley(value: ValueFn, n_players: int) -> np.ndarray:
    """Exact Shapley values by enumerating all ``2**n`` coalitions (``n <= 16``)."""
    if n_players > 16:
        raise ValueError(f"exact Shapley enumerates 2**{n_players} coalitions; use at most 16 players")
    return shapley_from_table(value(all_masks(n_players)), n_players)


def shapley_from_table(values: np.ndarray, n_players: int) -> np.ndarray:
    """Exact Shapley values from the value of every coalition, indexed as in :func:`all_masks`."""
    masks = all_masks(n_players)
    sizes = masks.sum(axis=1)
    weights = np.array([math.factorial(s) * math.factorial(n_players - s - 1) for s in range(n_players)])
    weights = weights / math.factorial(n_players)
    phi = np.zeros(n_players)
    for i in range(n_players):
        without = ~masks[:, i]
        rows = np.flatnonzero(without)
        phi[i] = np.sum(weights[sizes[rows]] * (values[rows | (1 << i)] - values[rows]))
    return phi


def _marginals(value: ValueFn, base: Mask, layer: int, chunk: int) -> np.ndarray:
    """``v(S + layer) - v(S - layer)`` for every base coalition S (rows of ``base``)."""
    out = np.empty(len(base))
    for start in range(0, len(base), chunk):
        rows = base[start : start + chunk].copy()
        rows[:, layer] = True
        with_layer = value(rows)
        rows[:, layer] = False
        out[start : start + chunk] = with_layer - value(rows)
    return out


def stratum_semivalue(
    value: ValueFn,
    n_layers: int,
    strata: Sequence[int],
    n_samples: int,
    rng: np.random.Generator,
    chunk: int = 65536,
) -> ShapleyResult:
    """The paper's estimate: mean marginal contribution over masks drawn from the sampling strata.

    This is a semivalue restricted to coalitions near the full model, not the Shapley value.
    """
    base = stratified_masks(n_layers, strata, split_counts(n_samples, len(strata)), rng, unique=False)
    values, stderr = np.zeros(n_layers), np.zeros(n_layers)
    for i in range(n_layers):
        m = _marginals(value, base, i, chunk)
        values[i], stderr[i] = m.mean(), m.std(ddof=1) / math.sqrt(len(m))
    return ShapleyResult(values, stderr, n_samples, "stratum_semivalue")


def stratified_shapley(
    value: ValueFn, n_layers: int, n_samples: int, rng: np.random.Generator, chunk: int = 65536
) -> ShapleyResult:
    """Shapley values by sampling the coalition of other layers stratified by size (uniform over sizes).

    ``phi_i = mean_s E[v(S + i) - v(S)]`` with ``|S| = s`` in ``0..L-1``; each size gets an equal share
    of ``n_samples`` per layer, and the standard error combines the per-size variances.
    """
    per_size = split_counts(n_samples, n_layers)
    values, stderr = np.zeros(n_layers), np.zeros(n_layers)
    others = n_layers - 1
    for i in range(n_layers):
        means, variances = [], []
        for size, count in enumerate(per_size):
            if count == 0:
                continue
            sub = random_masks(others, size, count, rng)  # [count, L-1]
            base = np.insert(sub, i, False, axis=1)
            m = _marginals(value, base, i, chunk)
            means.append(m.mean())
            variances.append(m.var(ddof=1) / count if count > 1 else 0.0)
        values[i] = np.mean(means)
        stderr[i] = math.sqrt(np.sum(variances)) / len(means)
    return ShapleyResult(values, stderr, n_samples, "shapley")
