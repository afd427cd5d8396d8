import numpy as np
import pytest

from shapprune.estimators import permutation
from shapprune.game import AdditiveGame
from tests.estimators.games import pairwise, weighted_majority


def test_chain_and_marginals():
    order = np.array([2, 0, 1])
    masks = permutation.chain(order)
    assert masks.tolist() == [[0, 0, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1]]
    np.testing.assert_allclose(permutation.marginals(order, np.array([0.0, 1.0, 3.0, 6.0])), [2.0, 3.0, 1.0])


def test_exact_on_additive_games_and_counts_pairs():
    game = AdditiveGame(np.linspace(-1, 2, 8))
    res = permutation.estimate(game, 40, np.random.default_rng(0))
    np.testing.assert_allclose(res.values, game.weights, atol=1e-12)
    assert res.n_evaluations <= 40 and res.diagnostics["permutations"] % 2 == 0


def test_antithetic_pairs_are_exact_on_pairwise_games():
    # along a permutation and its reverse, each pair interaction is counted once in total: Shapley exactly
    game = pairwise(6, 3)
    res = permutation.estimate(game, 12, np.random.default_rng(0))
    assert res.diagnostics["permutations"] == 2
    np.testing.assert_allclose(res.values, game.shapley(), atol=1e-12)


def test_unbiased_within_standard_errors():
    game = weighted_majority([4, 3, 2, 2, 1, 1], 7)
    runs = np.array([permutation.estimate(game, 30, np.random.default_rng(s)).values for s in range(200)])
    se = runs.std(axis=0, ddof=1) / np.sqrt(len(runs))
    assert np.all(np.abs(runs.mean(axis=0) - game.shapley()) < 3 * se)


def test_too_small_budget_raises():
    with pytest.raises(ValueError, match="too small"):
        permutation.estimate(AdditiveGame(np.ones(8)), 5, np.random.default_rng(0))
