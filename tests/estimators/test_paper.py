import numpy as np

from shapprune.estimators import paper
from shapprune.game import AdditiveGame, ThresholdGame


def test_reads_the_weights_of_an_additive_game():
    game = AdditiveGame(np.linspace(0.1, 1.0, 8))
    quad = {"surrogate": "quadratic", "surrogate_options": {"alphas": [1e-9]}}
    res = paper.estimate(game, 60, np.random.default_rng(0), readout_samples=200, **quad)
    np.testing.assert_allclose(res.values, game.weights, atol=1e-4)
    assert res.diagnostics["strata"] == [7, 6, 5] and res.n_evaluations <= 60


def test_spends_only_masks_in_its_strata_and_caps_them():
    game = ThresholdGame(8, 5)
    res = paper.estimate(game, 1000, np.random.default_rng(0), surrogate_options={"epochs": 5}, readout_samples=100)
    kept = res.diagnostics["masks"].sum(axis=1)
    assert set(kept.tolist()) == set(res.diagnostics["strata"]) == {7, 6, 5}
    assert res.n_evaluations == 8 + 28 + 56  # every mask of its strata, nothing else
