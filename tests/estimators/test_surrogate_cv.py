import numpy as np
import pytest

from shapprune.estimators import surrogate_cv
from shapprune.estimators.fidelity import heldout_fidelity
from tests.estimators.games import layer_like, pairwise, weighted_majority

MAJORITY = weighted_majority([5, 4, 3, 2, 1, 1], 8)  # a quadratic surrogate is biased here


def _over_seeds(game, budget, seeds, **options):
    runs = [surrogate_cv.estimate(game, budget, np.random.default_rng(s), **options) for s in range(seeds)]
    values = np.array([r.values for r in runs])  # [seeds, L]
    stderr = np.array([r.stderr for r in runs])
    return values, stderr


@pytest.mark.slow  # several seconds: the full tier runs it
@pytest.mark.parametrize("adaptive", [False, True], ids=["fixed", "adaptive"])
def test_unbiased_over_seeds_with_a_biased_surrogate(adaptive):
    truth = MAJORITY.shapley()
    values, stderr = _over_seeds(MAJORITY, 24, 150, surrogate="quadratic", folds=4, adaptive=adaptive)
    mean, se_of_mean = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))
    assert np.all(np.abs(mean - truth) < 3 * se_of_mean), (mean - truth) / se_of_mean
    # the reported standard errors match the spread over seeds (within a factor 1.6)
    ratio = values.std(axis=0) / np.sqrt((stderr**2).mean(axis=0))
    assert np.all((ratio > 1 / 1.6) & (ratio < 1.6)), ratio


def test_exact_when_the_budget_covers_the_game():
    game = layer_like(5, 0)
    res = surrogate_cv.estimate(game, 32, np.random.default_rng(0), surrogate="quadratic", folds=3, paired=False)
    np.testing.assert_allclose(res.values, game.shapley(), atol=1e-10)
    np.testing.assert_allclose(res.stderr, 0.0, atol=1e-12)
    assert res.n_evaluations == 32


def test_exact_surrogate_leaves_nothing_to_correct():
    game = pairwise(8, 0)  # the quadratic surrogate is exact, so the residual is zero
    res = surrogate_cv.estimate(game, 60, np.random.default_rng(0), surrogate="quadratic")
    np.testing.assert_allclose(res.values, game.shapley(), atol=1e-6)
    assert res.n_evaluations <= 60


def test_mlp_surrogate_is_exact_on_the_whole_game_and_reports_fidelity():
    game = layer_like(6, 1)
    options = {"epochs": 30}  # a poor fit on purpose: with every coalition measured the correction is exact
    res = surrogate_cv.estimate(
        game, 64, np.random.default_rng(0), surrogate="mlp", surrogate_options=options, folds=2, paired=False
    )
    assert res.n_evaluations == 64
    np.testing.assert_allclose(res.values, game.shapley(), atol=1e-8)
    report = heldout_fidelity(res)
    assert report is not None and report["overall"]["n"] == res.n_evaluations
    assert {row["n_kept"] for row in report["by_stratum"]} == set(range(7))
