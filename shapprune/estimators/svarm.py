"""Stratified SVARM (Kolpaczki et al. 2024) without a surrogate: every scored coalition updates every player.

The residual estimator of :mod:`shapprune.estimators.surrogate_cv` with a zero surrogate: an unbiased
Horvitz-Thompson estimate per coalition-size stratum, Neyman allocation (extreme sizes enumerated first).
"""

from __future__ import annotations

import numpy as np

from shapprune.estimators import surrogate_cv
from shapprune.estimators.base import EstimateResult
from shapprune.types import Game


def estimate(
    game: Game,
    budget: int,
    rng: np.random.Generator,
    *,
    paired: bool = True,
    allocation: str = "neyman",
    adaptive: bool = False,
    pilot_fraction: float = 0.5,
) -> EstimateResult:
    """Unbiased stratified Shapley values from ``budget`` coalitions, no surrogate."""
    return surrogate_cv.estimate(
        game,
        budget,
        rng,
        surrogate="none",
        paired=paired,
        allocation=allocation,
        adaptive=adaptive,
        pilot_fraction=pilot_fraction,
    )
