"""The estimator named in params.yaml: its options, its budget and its generator, shared by two stages.

``sample_masks`` draws the estimator's design and ``estimate_shapley`` replays the estimator on the
scored design; both must call it identically (same options, same seed), which this module guarantees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shapprune.config import Params
from shapprune.streams import stream


@dataclass(frozen=True)
class EstimatorCall:
    """``ESTIMATORS[name](game, budget, rng, **options)`` as configured."""

    name: str
    budget: int
    options: dict[str, Any]
    seed: int

    def rng(self) -> np.random.Generator:
        """The generator of the design (the same in both stages)."""
        return stream(self.seed, "estimator")


def estimator_call(params: Params, n_layers: int, design: bool = False) -> EstimatorCall:
    """Translate the ``estimate_shapley`` and ``sample_masks`` sections into an estimator call.

    ``design=True`` (``sample_masks``): the masks of a non-adaptive design do not depend on how its surrogate
    is trained, so ``fit_surrogate`` is not read (and changing it does not redraw and rescore the masks).
    """
    cfg, sm = params.estimate_shapley, params.sample_masks
    surrogate = cfg.resolved_surrogate()
    # an MLP inside an estimator is trained with fit_surrogate's recipe (Adam by default: the paper's SGD
    # recipe does not learn on a few hundred masks)
    mlp = params.fit_surrogate.mlp_options() if surrogate == "mlp" and not design else None
    if cfg.estimator in ("surrogate_cv", "surrogate_shapley"):
        options = {
            "surrogate": surrogate,
            "surrogate_options": mlp,
            "folds": cfg.folds,
            "paired": cfg.paired,
            "allocation": cfg.allocation,
            "readout_samples": cfg.n_samples,
        }
    elif cfg.estimator == "paper":
        options = {
            "strata": sm.resolve_strata(n_layers),
            "surrogate": surrogate,
            "surrogate_options": mlp,
            "folds": cfg.folds,
            "readout_samples": cfg.n_samples,
        }
    elif cfg.estimator == "svarm":
        options = {"paired": cfg.paired, "allocation": cfg.allocation}
    else:  # permutation, stratified
        options = {}
    return EstimatorCall(cfg.estimator, sm.n_masks, options, params.base.seed)
