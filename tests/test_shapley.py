import math

import numpy as np
import pytest

from shapprune.game import AdditiveGame, PairwiseGame, ThresholdGame
from shapprune.shapley import all_masks, exact_shapley, shapley_from_table, stratified_shapley, stratum_semivalue


def _pairwise(n: int, seed: int) -> PairwiseGame:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=n)
    W = rng.normal(size=(n, n))
    W = np.triu(W, 1) + np.triu(W, 1).T
    return PairwiseGame(w, W)


def test_all_masks_bit_order():
    m = all_masks(3)
    assert m.shape == (8, 3)
    assert m[5].tolist() == [True, False, True]


@pytest.mark.parametrize(
    "game",
    [AdditiveGame(np.array([0.5, -1.0, 2.0, 0.0])), _pairwise(6, 0), ThresholdGame(7, 4)],
    ids=["additive", "pairwise", "threshold"],
)
def test_exact_shapley_matches_closed_form(game):
    phi = exact_shapley(game, game.n_players)
    np.testing.assert_allclose(phi, game.shapley(), atol=1e-12)


def test_efficiency_on_exact_values():
    game = _pairwise(8, 1)
    phi = exact_shapley(game, 8)
    full, empty = game(np.ones((1, 8), bool))[0], game(np.zeros((1, 8), bool))[0]
    assert phi.sum() == pytest.approx(full - empty)


def test_exact_from_table_of_a_hand_game():
    # v({0}) = 1, v({1}) = 0, v({0,1}) = 3: phi_0 = (1 + 3 - 0)/2 = 2, phi_1 = (0 + 3 - 1)/2 = 1
    np.testing.assert_allclose(shapley_from_table(np.array([0.0, 1.0, 0.0, 3.0]), 2), [2.0, 1.0])


def test_exact_refuses_large_games():
    with pytest.raises(ValueError, match="at most 16"):
        exact_shapley(AdditiveGame(np.ones(17)), 17)


def test_stratified_shapley_is_exact_on_additive_games():
    game = AdditiveGame(np.linspace(-1, 1, 12))
    res = stratified_shapley(game, 12, 240, np.random.default_rng(0))
    np.testing.assert_allclose(res.values, game.shapley(), atol=1e-12)
    assert np.all(res.stderr < 1e-12)


def test_stratified_shapley_within_standard_errors_on_interacting_game():
    game = _pairwise(10, 2)
    res = stratified_shapley(game, 10, 4000, np.random.default_rng(1))
    z = np.abs(res.values - game.shapley()) / res.stderr
    assert np.all(z < 4.5), z
    assert res.ranking().tolist() == np.argsort(res.values, kind="stable").tolist()


def test_stratum_semivalue_is_exact_on_additive_games():
    game = AdditiveGame(np.arange(8.0))
    res = stratum_semivalue(game, 8, [7, 6], 100, np.random.default_rng(0))
    np.testing.assert_allclose(res.values, np.arange(8.0), atol=1e-12)


def test_stratum_semivalue_differs_from_shapley_on_threshold_games():
    # majority game with quota 7 of 8: near the full coalition every player is pivotal at |S| = 6 ...
    game = ThresholdGame(8, 7)
    semi = stratum_semivalue(game, 8, [7], 2000, np.random.default_rng(0))
    # base masks keep 7 of 8: adding i to a 7-set with i out gives 8 (v=1) vs the 7-set (v=1): marginal 0
    # unless i was in; then with=7-set (1) and without=6-set (0): marginal 1. P(i in 7-set) = 7/8.
    np.testing.assert_allclose(semi.values, 7 / 8, atol=4 * math.sqrt(7 / 64 / 2000))
    np.testing.assert_allclose(exact_shapley(game, 8), 1 / 8)
