import numpy as np

from shapprune.estimators import surrogate_shapley
from tests.estimators.games import pairwise, weighted_majority


def test_exact_with_a_well_specified_surrogate():
    game = pairwise(7, 2)
    res = surrogate_shapley.estimate(game, 80, np.random.default_rng(0), surrogate="quadratic", folds=3)
    np.testing.assert_allclose(res.values, game.shapley(), atol=1e-6)
    assert res.n_evaluations <= 80 and np.all(res.stderr < 1e-4)


def test_biased_with_a_misspecified_surrogate():
    game = weighted_majority([5, 4, 3, 2, 1, 1], 8)
    runs = np.array(
        [
            surrogate_shapley.estimate(game, 24, np.random.default_rng(s), surrogate="quadratic", folds=0).values
            for s in range(100)
        ]
    )
    se = runs.std(axis=0, ddof=1) / np.sqrt(len(runs))
    assert np.any(np.abs(runs.mean(axis=0) - game.shapley()) > 3 * se)  # what surrogate_cv corrects
