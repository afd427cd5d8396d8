"""Contribution estimators behind one interface: ``estimate(game, budget, rng, **options) -> EstimateResult``.

``budget`` counts distinct game (LLM) evaluations; every estimator wraps the game in a
:class:`~shapprune.estimators.budget.BudgetedGame`, so repeats are free and overspending raises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shapprune.estimators import paper, permutation, stratified, surrogate_cv, surrogate_shapley, svarm
from shapprune.estimators.base import EstimateResult, Estimator
from shapprune.estimators.budget import BudgetedGame, BudgetExceeded, as_budgeted, known_values
from shapprune.types import Game

ESTIMATORS: dict[str, Estimator] = {
    "paper": paper.estimate,
    "surrogate_shapley": surrogate_shapley.estimate,
    "surrogate_cv": surrogate_cv.estimate,
    "svarm": svarm.estimate,
    "permutation": permutation.estimate,
    "stratified": stratified.estimate,
}


def estimate(name: str, game: Game, budget: int, rng: np.random.Generator, **options: Any) -> EstimateResult:
    """Run the estimator registered as ``name``."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator '{name}'; use one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](game, budget, rng, **options)


__all__ = [
    "ESTIMATORS",
    "BudgetExceeded",
    "BudgetedGame",
    "EstimateResult",
    "Estimator",
    "as_budgeted",
    "estimate",
    "known_values",
]
