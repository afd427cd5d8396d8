"""Prefect tasks of the ``fit_surrogate`` stage."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.surrogate import MLPSurrogate, SurrogateSpec, TrainSpec, fit_mlp
from shapprune.types import Mask, Utility
from tasks.shared.guards import fault_point


@task(name="fit-mlp", cache_policy=NO_CACHE)
def fit_task(
    masks: Mask, utilities: Utility, spec: SurrogateSpec, train: TrainSpec, seed: int
) -> tuple[MLPSurrogate, list[float]]:
    """The MLP fitted on ``masks`` (bool[n, L]) -> ``utilities`` (float[n]); returns it and its loss per epoch."""
    # crash tests: SHAPPRUNE_FAULT=fit_surrogate:epoch:N kills the stage after epoch N
    return fit_mlp(masks, utilities, spec, train, seed, on_epoch=lambda n: fault_point("fit_surrogate:epoch", n))
