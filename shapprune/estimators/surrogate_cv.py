"""Surrogate with a residual correction (control variate): unbiased, with design-based standard errors.

``phi(v) = phi(f) + phi(v - f)``: the surrogate's Shapley values are computed (nearly) exactly, and the
Shapley values of the residual game are estimated from the scored coalitions with known inclusion
probabilities (see :mod:`shapprune.estimators.design`), so surrogate bias cannot decide the pruning
(the idea of shapiq's ProxySHAP). Cross-fitting keeps it unbiased: the units of each stratum are dealt
to K folds; the surrogate ``f_k`` is trained on every scored coalition outside fold k, whose residuals
are then known exactly, and fold k - given the rest, a uniform sample without replacement of the
stratum's units not scored elsewhere - estimates the residual sum over those:

    share_h = c_h [ sum_{S in h} f_k(S) g(S)  +  sum_{outside fold k} u_k  +  rest / |fold k| sum_{fold k} u_k ],

with ``u_k`` a unit's ``sum (v - f_k)(S) g_i(S)`` and ``rest`` the stratum's units not scored outside fold k.
Each fold holding units of the stratum gives an unbiased estimate of its share of phi given ``f_k``; the
shares average those folds, so a stratum needs only one scored unit however many folds there are.
Standard errors use the out-of-fold spread of the unit terms per stratum (finite-population corrected).
With ``adaptive`` a pilot (``pilot_fraction`` of the budget) trains the surrogate and measures each
stratum's residual spread, the rest of the budget is allocated by Neyman allocation, and only the second
phase is dealt to folds (still unbiased: the pilot is known to every fold).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shapprune.estimators.base import EstimateResult
from shapprune.estimators.budget import as_budgeted
from shapprune.estimators.design import allocate, make_strata, prior_weights
from shapprune.estimators.readout import stratum_sums
from shapprune.estimators.regressors import fit_surrogate
from shapprune.estimators.sample import UnitSample, floor_cost, floors, unit_costs, unit_terms
from shapprune.types import Game


def _folds(sample: UnitSample, estimation: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each estimation unit (-1 elsewhere): a random rotation within each stratum."""
    fold = np.full(len(sample), -1)
    for h in range(len(sample.strata)):
        idx = np.flatnonzero(estimation & (sample.stratum == h))
        idx = idx[rng.permutation(len(idx))]
        fold[idx] = (np.arange(len(idx)) + rng.integers(n_folds)) % n_folds
    return fold


def _crossfit(
    sample: UnitSample,
    values: np.ndarray,
    estimation: np.ndarray,
    n_folds: int,
    surrogate: str,
    options: dict[str, Any] | None,
    rng: np.random.Generator,
    readout_samples: int,
    fallback_spread: np.ndarray | None = None,
) -> dict[str, Any]:
    """Cross-fitted estimate over the estimation units; also out-of-fold predictions and unit terms.

    Stratum by stratum, each fold holding some of the stratum's units (or none when the stratum is fully
    scored) gives an unbiased estimate of that stratum's share of phi; the folds' estimates are averaged.
    """
    masks, owner = sample.masks()
    strata, n_players, n_units = sample.strata, sample.n_players, len(sample)
    fold = _folds(sample, estimation, n_folds, rng)
    oof_terms = np.zeros((n_units, n_players))
    oof_pred = np.full(len(masks), np.nan)
    shares = [[] for _ in strata]  # per stratum: (estimate[L], units in the fold, units outside it)
    predictors = []
    for k in range(n_folds):
        held = fold[owner] == k  # coalitions of fold k
        predict = fit_surrogate(surrogate, masks[~held], values[~held], rng, options)
        predictors.append(predict)
        pred = predict(masks)
        terms = unit_terms(masks, owner, values - pred, n_units)  # [n_units, L]
        in_fold = fold == k
        oof_terms[in_fold] = terms[in_fold]
        oof_pred[held] = pred[held]
        if surrogate == "none":
            sums, sums_var = np.zeros((len(strata), n_players)), np.zeros((len(strata), n_players))
        else:
            sums, sums_var = stratum_sums(predict, strata, n_players, rng, readout_samples)
        for h, st in enumerate(strata):
            in_h = sample.stratum == h
            outside, inside = in_h & ~in_fold, in_h & in_fold
            rest, n = st.population - int(outside.sum()), int(inside.sum())
            if rest > 0 and n == 0:
                continue  # this fold holds none of the stratum's unscored units
            total = terms[outside].sum(axis=0) + (rest / n * terms[inside].sum(axis=0) if rest > 0 else 0.0)
            shares[h].append((sums[h] + st.coef * total, sums_var[h], n, rest))
    spreads = np.full((len(strata), n_players), np.nan)  # variance of out-of-fold unit terms per stratum
    for h in range(len(strata)):
        sel = estimation & (sample.stratum == h)
        if sel.sum() >= 2:
            spreads[h] = oof_terms[sel].var(axis=0, ddof=1)
    values_out, var_out = np.zeros(n_players), np.zeros(n_players)
    for h, st in enumerate(strata):
        if not shares[h]:
            raise RuntimeError(f"stratum of size {st.size} has no scored unit; the design is too small")
        spread = spreads[h] if fallback_spread is None or np.isfinite(spreads[h]).all() else fallback_spread[h]
        m = len(shares[h])
        values_out += np.mean([s[0] for s in shares[h]], axis=0)
        for _, readout_var, n, rest in shares[h]:
            var_out += readout_var / m**2
            if rest > n:
                var_out += st.coef**2 * rest * (rest - n) / n * spread / m**2

    def predict_mean(m: np.ndarray) -> np.ndarray:
        return np.mean([p(m) for p in predictors], axis=0)

    return {
        "values": values_out,
        "stderr": np.sqrt(var_out),
        "spread": spreads,
        "oof_pred": None if surrogate == "none" else oof_pred,
        "predict": None if surrogate == "none" else predict_mean,
        "fold": fold,
    }


def _adaptive_weights(strata: list, spread: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Neyman weights ``c_h N_h sd_h`` from the pilot's out-of-fold spread (prior shape where unmeasured)."""
    measured_rows = np.isfinite(spread).all(axis=1)
    sd = np.full(len(strata), np.nan)  # NaN where fewer than 2 pilot units
    sd[measured_rows] = np.sqrt(spread[measured_rows].mean(axis=1))
    measured = np.array([st.coef * st.population for st in strata]) * sd
    ok = np.isfinite(measured) & (prior > 0)
    scale = float(np.median(measured[ok] / prior[ok])) if ok.any() else 1.0
    out = np.where(ok, measured, prior * scale)
    return np.maximum(out, 1e-6 * max(float(out.max()), 1e-12))


def estimate(
    game: Game,
    budget: int,
    rng: np.random.Generator,
    *,
    surrogate: str = "ridge",
    surrogate_options: dict[str, Any] | None = None,
    folds: int = 10,
    paired: bool = True,
    allocation: str = "neyman",
    adaptive: bool = False,
    pilot_fraction: float = 0.5,
    readout_samples: int = 20000,
) -> EstimateResult:
    """Unbiased Shapley values: surrogate Shapley values plus a cross-fitted residual correction."""
    g = as_budgeted(game, budget)
    strata = make_strata(g.n_players, paired)
    costs, caps = unit_costs(strata, g), np.array([st.population for st in strata])
    n_folds = 1 if surrogate == "none" else folds
    if n_folds < 1:
        raise ValueError("folds must be at least 1 (2 or more with a surrogate)")
    if surrogate != "none" and n_folds < 2:
        raise ValueError("a surrogate needs at least 2 folds to be cross-fitted")
    prior = prior_weights(strata, g.n_players) if allocation == "neyman" else np.ones(len(strata))
    if allocation not in ("neyman", "uniform"):
        raise ValueError(f"unknown allocation '{allocation}'; use neyman or uniform")
    min_units = 2  # two units per stratum measure its spread (the standard error)
    sample = UnitSample(g.n_players, strata)
    floor = floors(strata, min_units)
    pilot_budget = max(floor_cost(strata, costs, min_units), pilot_fraction * budget)
    open_after = np.minimum(caps, floor + 1)  # the second phase needs a unit in every stratum not yet exhausted
    adaptive = adaptive and float(np.sum(costs * open_after)) <= budget - (pilot_budget - np.sum(costs * floor))
    fallback_spread = None
    if not adaptive:
        sample.draw(allocate(prior, costs, caps, floor, budget), rng)
        estimation = np.ones(len(sample), dtype=bool)
    else:
        sample.draw(allocate(prior, costs, caps, floor, pilot_budget), rng)
        masks, _ = sample.masks()
        pilot = _crossfit(
            sample, g(masks), np.ones(len(sample), bool), n_folds, surrogate, surrogate_options, rng, readout_samples
        )
        have = sample.counts()
        weights = _adaptive_weights(strata, pilot["spread"], prior)
        target = allocate(weights, costs, caps, np.minimum(caps, have + 1), budget)  # pilot units count too
        sample.draw(target, rng, phase=1)
        estimation = sample.phase == 1
        fallback_spread = pilot["spread"]
    masks, _ = sample.masks()
    values = g(masks)
    fit = _crossfit(
        sample, values, estimation, n_folds, surrogate, surrogate_options, rng, readout_samples, fallback_spread
    )
    method = "svarm" if surrogate == "none" else "surrogate_cv"
    return EstimateResult(
        fit["values"],
        fit["stderr"],
        g.n_evaluations,
        method,
        n_evaluations=g.n_evaluations,
        diagnostics={
            "folds": n_folds,
            "adaptive": adaptive,
            "units_per_stratum": sample.counts().tolist(),
            "stratum_sizes": [st.size for st in strata],
            "masks": masks,
            "values": values,
            "oof_pred": fit["oof_pred"],
            "predict": fit["predict"],
        },
    )
