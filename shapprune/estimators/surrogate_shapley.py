"""Shapley-weighted readout of a surrogate (uniform over coalition sizes), trained on masks of every size.

The budget buys coalitions stratified by size (see :mod:`shapprune.estimators.design`); the surrogate is
fitted on all of them and its Shapley values are computed exactly (or sampled beyond 16 players).
Standard errors come from a delete-a-fold jackknife over ``folds`` refits, whose out-of-fold predictions
double as the held-out fidelity check. Biased wherever the surrogate is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shapprune.estimators.base import EstimateResult
from shapprune.estimators.budget import as_budgeted
from shapprune.estimators.design import allocate, make_strata, prior_weights
from shapprune.estimators.readout import surrogate_shapley
from shapprune.estimators.regressors import fit_surrogate
from shapprune.estimators.sample import UnitSample, floors, unit_costs
from shapprune.types import Game


def jackknife(
    masks: np.ndarray,
    values: np.ndarray,
    group: np.ndarray,
    n_folds: int,
    fit: Any,
    readout: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Delete-a-fold jackknife: ``(stderr[L], out-of-fold predictions[n])`` of ``readout(fit(train))``."""
    reps, oof = [], np.full(len(masks), np.nan)
    for k in range(n_folds):
        held = group == k
        predict = fit(masks[~held], values[~held])
        oof[held] = predict(masks[held])
        reps.append(readout(predict))
    reps_arr = np.array(reps)  # [K, L]
    stderr = np.sqrt((n_folds - 1) / n_folds * np.sum((reps_arr - reps_arr.mean(axis=0)) ** 2, axis=0))
    return stderr, oof


def estimate(
    game: Game,
    budget: int,
    rng: np.random.Generator,
    *,
    surrogate: str = "mlp",
    surrogate_options: dict[str, Any] | None = None,
    paired: bool = True,
    allocation: str = "uniform",
    folds: int = 5,
    readout_samples: int = 20000,
) -> EstimateResult:
    """Shapley values of a surrogate fitted on ``budget`` size-stratified coalitions."""
    g = as_budgeted(game, budget)
    n_players = g.n_players
    strata = make_strata(n_players, paired)
    costs, caps = unit_costs(strata, g), np.array([st.population for st in strata])
    weights = prior_weights(strata, n_players) if allocation == "neyman" else np.ones(len(strata))
    sample = UnitSample(n_players, strata)
    sample.draw(allocate(weights, costs, caps, floors(strata, 1), budget), rng)
    masks, owner = sample.masks()
    values = g(masks)

    def fit(m: np.ndarray, v: np.ndarray) -> Any:
        return fit_surrogate(surrogate, m, v, rng, surrogate_options)

    def readout(predict: Any) -> np.ndarray:
        return surrogate_shapley(predict, n_players, rng, readout_samples)[0]

    predict = fit(masks, values)
    phi, phi_se = surrogate_shapley(predict, n_players, rng, readout_samples)
    jack_se, oof = np.zeros(n_players), None
    if folds >= 2:
        group = rng.permutation(len(sample))[owner] % folds  # a unit's coalitions stay together
        jack_se, oof = jackknife(masks, values, group, folds, fit, readout)
    return EstimateResult(
        phi,
        np.sqrt(phi_se**2 + jack_se**2),
        g.n_evaluations,
        "surrogate_shapley",
        n_evaluations=g.n_evaluations,
        diagnostics={"masks": masks, "values": values, "oof_pred": oof, "predict": predict, "folds": folds},
    )
