"""Every layer-pruning criterion by name, and one entry point to score layers or choose the ones to drop."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from shapprune.baselines.angular import angular_scores
from shapprune.baselines.base import LayerScores
from shapprune.baselines.block_influence import block_influence_scores
from shapprune.baselines.iterative_shapley import iterative_shapley_scores
from shapprune.baselines.oracle import oracle_scores
from shapprune.baselines.ppl import ppl_scores
from shapprune.baselines.random_order import random_scores
from shapprune.baselines.sleb import sleb_scores
from shapprune.baselines.taylor import taylor_scores
from shapprune.config.names import PRUNE_METHODS
from shapprune.types import TokenWindows

ScoreFn = Callable[..., LayerScores]

BASELINES: dict[str, ScoreFn] = {
    "block_influence": block_influence_scores,
    "angular": angular_scores,
    "sleb": sleb_scores,
    "ppl": ppl_scores,
    "taylor": taylor_scores,
    "random": random_scores,
    "oracle": oracle_scores,
    "iterative_shapley": iterative_shapley_scores,
}
SET_VALUED = ("angular", "sleb", "oracle")  # choose a set per number of dropped layers
# the pipeline's own methods: "shapley" (drop the lowest of estimate_shapley) and "select" (subset search)
METHODS = ("shapley", "select", *BASELINES)
assert METHODS == PRUNE_METHODS, "shapprune.config.names.PRUNE_METHODS must list these (params are checked there)"


def _accepted(fn: ScoreFn, opts: dict[str, Any]) -> dict[str, Any]:
    names = inspect.signature(fn).parameters
    return {k: v for k, v in opts.items() if k in names}


def layer_scores(
    method: str,
    model: nn.Module,
    windows: TokenWindows,
    n_drops: Sequence[int] = (),
    rng: np.random.Generator | None = None,
    **opts: Any,
) -> LayerScores:
    """Score ``model``'s layers with ``method`` on calibration ``windows``; sets for every ``k`` in ``n_drops``.

    ``opts`` (``batch_size``, ``cache_mib``, ``max_subsets``, ``reduce``, ``protect_first``, ...) go to the
    methods that take them and are ignored by the others.
    """
    if method not in BASELINES:
        raise ValueError(f"unknown pruning method '{method}'; choose from {', '.join(BASELINES)}")
    fn = BASELINES[method]
    return fn(model, windows, n_drops=list(n_drops), **_accepted(fn, {"rng": rng, **opts}))


def choose_layers(
    method: str,
    model: nn.Module,
    windows: TokenWindows,
    n_drop: int,
    rng: np.random.Generator | None = None,
    **opts: Any,
) -> list[int]:
    """The ``n_drop`` layers ``method`` removes (sorted)."""
    return layer_scores(method, model, windows, [n_drop], rng, **opts).drop(n_drop)
