"""Drawing an estimator's design ahead and replaying it on scored masks gives the direct estimate exactly."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.estimators import ESTIMATORS
from shapprune.estimators.budget import BudgetedGame, known_values
from shapprune.estimators.replay import MissingScore, ScoredGame, design, replay
from tests.estimators.games import pairwise

OPTIONS = {
    "surrogate_cv": {"readout_samples": 2000},
    "paper": {"folds": 0, "surrogate_options": {"epochs": 20}, "readout_samples": 2000},
    "surrogate_shapley": {"surrogate": "ridge", "readout_samples": 2000},
    "svarm": {},
    "permutation": {},
    "stratified": {},
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_replay_equals_the_direct_estimate(name):
    game = pairwise(12, 3)
    full = float(game(np.ones((1, 12), bool))[0])
    masks = design(name, 12, 120, np.random.default_rng(5), **OPTIONS[name])
    assert 0 < len(masks) <= 120 and len({m.tobytes() for m in masks}) == len(masks)
    assert not masks.all(axis=1).any()  # the full model is known, never scored
    counted = BudgetedGame(game, None, known=known_values(12, full=full))
    direct = ESTIMATORS[name](counted, 120, np.random.default_rng(5), **OPTIONS[name])
    asked, _ = counted.scored()
    np.testing.assert_array_equal(asked, masks)  # the same masks, in the same order
    replayed = replay(name, ScoredGame(masks, game(masks), full), 120, np.random.default_rng(5), **OPTIONS[name])
    np.testing.assert_allclose(replayed.values, direct.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(replayed.stderr, direct.stderr, rtol=0, atol=1e-12)


def test_a_different_design_is_reported_not_guessed():
    game = pairwise(10, 0)
    masks = design("svarm", 10, 60, np.random.default_rng(1))
    scored = ScoredGame(masks, game(masks), 0.0, source="data/scores.parquet")
    with pytest.raises(MissingScore, match=r"data/scores.parquet has no score for mask [01]{10}.*dvc repro"):
        replay("svarm", scored, 60, np.random.default_rng(2))


def test_adaptive_designs_are_refused():
    with pytest.raises(ValueError, match="set adaptive false"):
        design("surrogate_cv", 10, 60, np.random.default_rng(0), adaptive=True)
