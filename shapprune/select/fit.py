"""The refit step of active refinement: a ``fit(masks, values, rng) -> predict`` callable from a surrogate kind."""

from __future__ import annotations

from typing import Any

import numpy as np

from shapprune.estimators.regressors import SURROGATES, Predictor, fit_surrogate
from shapprune.select.verify import Fit
from shapprune.types import Mask, Utility

# the fit_surrogate params that the MLP takes (architecture + training recipe)
MLP_OPTIONS = ("hidden_mult", "depth", "output", "optimizer", "lr", "momentum", "weight_decay", "epochs")
MLP_OPTIONS += ("batch_size", "step_size", "gamma")


def surrogate_fit(kind: str, options: dict[str, Any] | None = None) -> Fit:
    """``fit(masks, values, rng) -> predict`` for a surrogate of ``kind`` (``mlp``, ``ridge``, ``gbr``, ...).

    For ``mlp``, ``options`` may be the whole ``fit_surrogate`` params section: only the keys the MLP takes
    are used.
    """
    if kind not in SURROGATES or kind == "none":
        raise ValueError(f"select.surrogate: unknown surrogate '{kind}'; use one of {', '.join(SURROGATES[:-1])}")
    opts = dict(options or {})
    if kind == "mlp":
        opts = {k: v for k, v in opts.items() if k in MLP_OPTIONS}

    def fit(masks: Mask, values: Utility, rng: np.random.Generator) -> Predictor:
        return fit_surrogate(kind, masks, values, rng, dict(opts))

    return fit
