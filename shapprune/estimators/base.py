"""The result of a contribution estimator and the signature every estimator follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from shapprune.shapley import ShapleyResult
from shapprune.types import Game


@dataclass(frozen=True)
class EstimateResult(ShapleyResult):
    """Per-player values and standard errors, with the LLM evaluations they cost.

    ``n_samples`` (inherited) is set to ``n_evaluations``; ``diagnostics`` holds estimator-specific
    extras (the scored masks, out-of-fold surrogate predictions, fold count, ...).
    """

    n_evaluations: int = 0
    diagnostics: dict[str, Any] = field(default_factory=dict, compare=False)


class Estimator(Protocol):
    """``estimate(game, budget, rng, **options)``: at most ``budget`` distinct game evaluations."""

    def __call__(self, game: Game, budget: int, rng: np.random.Generator, **options: Any) -> EstimateResult: ...
