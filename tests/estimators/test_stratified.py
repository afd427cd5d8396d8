import numpy as np
import pytest

from shapprune.estimators import stratified
from shapprune.game import AdditiveGame
from tests.estimators.games import pairwise


def test_exact_on_additive_games():
    game = AdditiveGame(np.arange(6.0))
    res = stratified.estimate(game, 50, np.random.default_rng(0))
    np.testing.assert_allclose(res.values, np.arange(6.0), atol=1e-12)
    assert res.n_evaluations <= 50


@pytest.mark.slow  # several seconds: the full tier runs it
def test_unbiased_when_every_size_is_drawn_and_when_not():
    game = pairwise(5, 4)
    for budget in (16, 64):  # 16: fewer draws than sizes per player; 64: every stratum drawn
        runs = np.array([stratified.estimate(game, budget, np.random.default_rng(s)).values for s in range(200)])
        se = runs.std(axis=0, ddof=1) / np.sqrt(len(runs))
        assert np.all(np.abs(runs.mean(axis=0) - game.shapley()) < 3 * se), budget
