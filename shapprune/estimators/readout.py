"""Shapley values of a cheap value function (a surrogate): exact up to 16 players, sampled beyond."""

from __future__ import annotations

import numpy as np

from shapprune.estimators.design import Stratum, sample_units, shapley_weights, unit_masks
from shapprune.shapley import ValueFn, all_masks, shapley_from_table, stratified_shapley

EXACT_UP_TO = 16


def surrogate_shapley(
    predict: ValueFn, n_players: int, rng: np.random.Generator, n_samples: int = 20000
) -> tuple[np.ndarray, np.ndarray]:
    """``(values, stderr)``: enumeration of all ``2**L`` coalitions when ``L <= 16`` (stderr 0), else
    :func:`shapprune.shapley.stratified_shapley` with ``n_samples`` coalitions per player."""
    if n_players <= EXACT_UP_TO:
        return shapley_from_table(predict(all_masks(n_players)), n_players), np.zeros(n_players)
    res = stratified_shapley(predict, n_players, n_samples, rng)
    return res.values, res.stderr


def stratum_sums(
    predict: ValueFn, strata: list[Stratum], n_players: int, rng: np.random.Generator, n_samples: int = 20000
) -> tuple[np.ndarray, np.ndarray]:
    """Each stratum's share of the surrogate's Shapley values, ``c_h sum_{S in h} f(S) g(S)``, and its variance.

    Returns ``(sums[H, L], var[H, L])``; ``sums.sum(axis=0)`` are the Shapley values of ``predict``.
    Exact (variance 0) up to 16 players, else ``n_samples`` units per stratum drawn with replacement.
    """
    sums, var = np.zeros((len(strata), n_players)), np.zeros((len(strata), n_players))
    if n_players <= EXACT_UP_TO:
        masks = all_masks(n_players)  # [2**L, L]
        terms = predict(masks)[:, None] * shapley_weights(masks)  # [2**L, L]
        size = masks.sum(axis=1)
        size = np.minimum(size, n_players - size) if strata[0].paired else size
        for h, st in enumerate(strata):
            sums[h] = st.coef * terms[size == st.size].sum(axis=0)
        return sums, var
    for h, st in enumerate(strata):
        count = min(n_samples, st.population)
        leads = sample_units(n_players, st, count, rng) if count == st.population else _draw(n_players, st, count, rng)
        masks = unit_masks(leads, st)
        terms = (predict(masks)[:, None] * shapley_weights(masks)).reshape(count, st.masks_per_unit, n_players)
        unit = terms.sum(axis=1)  # [count, L]
        scale = st.coef * st.population
        sums[h] = scale * unit.mean(axis=0)
        if count < st.population:
            var[h] = scale**2 * unit.var(axis=0, ddof=1) / count
    return sums, var


def _draw(n_players: int, stratum: Stratum, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` lead masks of a stratum drawn uniformly with replacement: ``bool[count, L]``."""
    keys = rng.random((count, n_players))  # [count, L]
    leads = keys.argsort(axis=1).argsort(axis=1) < stratum.size
    if stratum.is_middle(n_players):
        leads = np.where(leads[:, :1], leads, ~leads)
    return leads
