"""The paper's estimator (the reference): MLP surrogate on masks near the full model, stratum-restricted readout.

Masks are drawn uniformly within the paper's strata (kept-layer counts ``round(f L)`` for the keep
fractions {30, 27, 24, 21, 18}/32), an equal share per stratum (capped by the stratum's size, no mask
twice); the paper's MLP ``L -> 2L -> 1`` (CELU, sigmoid, SGD 0.008 momentum 0.9, StepLR 100/0.1, 300
epochs) is trained on all of them without validation, and each layer's contribution is its mean marginal
contribution over surrogate masks from the same strata (a semivalue, not the Shapley value). Standard
errors: readout noise plus a delete-a-fold jackknife over refits (the paper reports none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from shapprune.estimators.base import EstimateResult
from shapprune.estimators.budget import as_budgeted
from shapprune.estimators.design import allocate
from shapprune.estimators.regressors import fit_surrogate
from shapprune.estimators.surrogate_shapley import jackknife
from shapprune.sampling import PAPER_KEEP_FRACTIONS, strata_from_fractions, stratified_masks
from shapprune.shapley import stratum_semivalue
from shapprune.types import Game, Mask, Utility

PAPER_MLP = {"output": "sigmoid", "optimizer": "sgd", "lr": 0.008, "batch_size": 300, "gamma": 0.1}


def estimate(
    game: Game,
    budget: int,
    rng: np.random.Generator,
    *,
    keep_fractions: Sequence[float] = PAPER_KEEP_FRACTIONS,
    strata: Sequence[int] | None = None,
    surrogate: str = "mlp",
    surrogate_options: dict[str, Any] | None = None,
    folds: int = 5,
    readout_samples: int = 20000,
) -> EstimateResult:
    """The paper's stratum-restricted semivalue read off a surrogate trained on ``budget`` masks."""
    g = as_budgeted(game, budget)
    n_players = g.n_players
    kept = list(strata) if strata is not None else strata_from_fractions(n_players, keep_fractions)
    caps = np.array([math.comb(n_players, k) for k in kept])
    ones = np.ones(len(kept))
    counts = allocate(ones, ones, caps, np.zeros(len(kept), np.int64), budget)  # equal shares, capped
    masks = stratified_masks(n_players, kept, counts.tolist(), rng, unique=True)
    values = g(masks)
    options = PAPER_MLP if surrogate == "mlp" and surrogate_options is None else surrogate_options
    return from_scores(masks, values, kept, rng, surrogate, options, folds, readout_samples)


def from_scores(
    masks: Mask,
    values: Utility,
    strata: Sequence[int],
    rng: np.random.Generator,
    surrogate: str = "mlp",
    surrogate_options: dict[str, Any] | None = None,
    folds: int = 5,
    readout_samples: int = 20000,
) -> EstimateResult:
    """The paper's readout from masks already scored (``bool[m, L]``, their values): the surrogate fitted on
    them, the stratum semivalue read off it, jackknife standard errors. ``estimate`` draws the masks first; a
    design scored only in part (``score_masks.stop: decision``) is read out here directly."""
    masks = np.asarray(masks, dtype=bool)  # [m, L]
    n_players, kept = masks.shape[1], list(strata)

    def fit(m: np.ndarray, v: np.ndarray) -> Any:
        return fit_surrogate(surrogate, m, v, rng, dict(surrogate_options or {}))

    def readout(predict: Any) -> np.ndarray:
        return stratum_semivalue(predict, n_players, kept, readout_samples, rng).values

    predict = fit(masks, values)
    res = stratum_semivalue(predict, n_players, kept, readout_samples, rng)
    jack_se, oof = np.zeros(n_players), None
    if folds >= 2:
        jack_se, oof = jackknife(masks, values, rng.permutation(len(masks)) % folds, folds, fit, readout)
    return EstimateResult(
        res.values,
        np.sqrt(res.stderr**2 + jack_se**2),
        len(masks),
        "paper",
        n_evaluations=len(masks),
        diagnostics={"masks": masks, "values": values, "oof_pred": oof, "predict": predict, "strata": kept},
    )
