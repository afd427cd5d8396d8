"""Surrogates of the game: mask -> utility regressors, all fitted by one call with an explicit generator.

``mlp`` is the paper's network (:func:`shapprune.surrogate.fit_mlp`, Adam by default); ``gbr`` is
scikit-learn gradient boosting; ``ridge`` is cross-validated ridge regression on ``features``: ``size``
(players modulated by the kept fraction, the default), ``pairwise`` or ``pairwise+size``; ``quadratic``
is ``ridge`` on pairwise features; ``gp`` a Gaussian process with one length scale per player; ``none``
predicts zero (no surrogate).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from shapprune.surrogate import fit_mlp, mlp_specs
from shapprune.types import Mask, Utility

Predictor = Callable[[Mask], Utility]
SURROGATES = ("mlp", "gbr", "quadratic", "ridge", "gp", "none")


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _mlp(masks: Mask, y: Utility, rng: np.random.Generator, **options: Any) -> Predictor:
    output = options.get("output", "auto")
    if output == "auto":
        output = "sigmoid" if y.min() >= 0.0 and y.max() <= 1.0 else "linear"
    defaults = {"optimizer": "adam", "lr": 0.01, "batch_size": 64, "gamma": 0.5}
    spec, train = mlp_specs(masks.shape[1], defaults | options | {"output": output})
    # a linear head learns standardised targets; a sigmoid head learns the utilities themselves
    shift, scale = (float(y.mean()), float(y.std()) or 1.0) if output == "linear" else (0.0, 1.0)
    model, _ = fit_mlp(masks, (y - shift) / scale, spec, train, _seed(rng))
    return lambda m: model.predict(np.asarray(m, dtype=bool)) * scale + shift


def _gbr(masks: Mask, y: Utility, rng: np.random.Generator, **options: Any) -> Predictor:
    from sklearn.ensemble import GradientBoostingRegressor

    params = {"n_estimators": 300, "max_depth": 3, "learning_rate": 0.05, "subsample": 0.8, **options}
    model = GradientBoostingRegressor(random_state=_seed(rng), **params).fit(masks.astype(np.float64), y)
    return lambda m: model.predict(np.asarray(m, dtype=np.float64))


def pairwise_features(masks: Mask) -> np.ndarray:
    """Players and their pairwise products: ``float[n, L + L (L - 1) / 2]``."""
    x = np.asarray(masks, dtype=np.float64)  # [n, L]
    i, j = np.triu_indices(x.shape[1], k=1)
    return np.concatenate([x, x[:, i] * x[:, j]], axis=1)


def size_features(masks: Mask) -> np.ndarray:
    """Players modulated by the kept fraction k, plus k² and k³: ``float[n, 3 L + 2]``.

    Removing a layer costs more when fewer layers remain (utilities are convex in the kept count).
    """
    x = np.asarray(masks, dtype=np.float64)  # [n, L]
    k = x.mean(axis=1, keepdims=True)  # [n, 1]
    return np.concatenate([x, x * k, x * k**2, k**2, k**3], axis=1)


FEATURES = {
    "pairwise": pairwise_features,
    "size": size_features,
    "pairwise+size": lambda m: np.concatenate([pairwise_features(m), size_features(m)[:, m.shape[1] :]], axis=1),
}


def _ridge(masks: Mask, y: Utility, rng: np.random.Generator, **options: Any) -> Predictor:
    from sklearn.linear_model import RidgeCV

    del rng  # deterministic
    features = FEATURES[options.pop("features", "size")]
    alphas = options.pop("alphas", np.logspace(-8, 3, 34))
    model = RidgeCV(alphas=alphas, **options).fit(features(masks), y)
    return lambda m: model.predict(features(np.asarray(m, dtype=bool)))


def _quadratic(masks: Mask, y: Utility, rng: np.random.Generator, **options: Any) -> Predictor:
    return _ridge(masks, y, rng, **{"features": "pairwise", **options})


def _gp(masks: Mask, y: Utility, rng: np.random.Generator, **options: Any) -> Predictor:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    n_players = masks.shape[1]
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.full(n_players, 2.0), (0.05, 1e3)) + WhiteKernel(
        1e-4, (1e-9, 1e-1)
    )
    params = {"normalize_y": True, "n_restarts_optimizer": 1, **options}
    model = GaussianProcessRegressor(kernel, random_state=_seed(rng), **params).fit(masks.astype(np.float64), y)
    return lambda m: model.predict(np.asarray(m, dtype=np.float64))


def _none(masks: Mask, y: Utility, rng: np.random.Generator, **options: Any) -> Predictor:
    del masks, y, rng, options
    return lambda m: np.zeros(len(m))


_FITTERS = {"mlp": _mlp, "gbr": _gbr, "quadratic": _quadratic, "ridge": _ridge, "gp": _gp, "none": _none}


def fit_surrogate(
    kind: str, masks: Mask, values: Utility, rng: np.random.Generator, options: dict[str, Any] | None = None
) -> Predictor:
    """Fit a surrogate of ``kind`` on ``(masks, values)``; returns ``predict(masks) -> float[n]``."""
    if kind not in _FITTERS:
        raise ValueError(f"unknown surrogate '{kind}'; use one of {', '.join(SURROGATES)}")
    return _FITTERS[kind](np.asarray(masks, dtype=bool), np.asarray(values, dtype=np.float64), rng, **(options or {}))
