import numpy as np

from shapprune.estimators import svarm
from tests.estimators.games import layer_like, weighted_majority


def test_exact_at_full_enumeration():
    game = layer_like(5, 2)
    res = svarm.estimate(game, 32, np.random.default_rng(0), paired=True)
    np.testing.assert_allclose(res.values, game.shapley(), atol=1e-12)


def test_unbiased_over_seeds():
    game = weighted_majority([4, 3, 2, 2, 1, 1], 7)
    runs = np.array([svarm.estimate(game, 20, np.random.default_rng(s)).values for s in range(300)])
    se = runs.std(axis=0, ddof=1) / np.sqrt(len(runs))
    assert np.all(np.abs(runs.mean(axis=0) - game.shapley()) < 3 * se)
