import numpy as np
import pytest

from shapprune.estimators import ESTIMATORS, BudgetedGame, BudgetExceeded, as_budgeted, known_values
from shapprune.table_game import TableGame
from tests.estimators.games import layer_like


def test_repeats_are_free_and_overspending_raises():
    table = TableGame(np.arange(16.0))
    game = BudgetedGame(table, budget=3)
    masks = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]], bool)
    np.testing.assert_array_equal(game(masks), [1.0, 2.0, 1.0])
    assert game.n_evaluations == 2 and table.calls == 2 and game.remaining == 1
    game(masks[:1])  # cached
    assert game.n_evaluations == 2
    with pytest.raises(BudgetExceeded):
        game(np.array([[0, 0, 1, 0], [0, 0, 0, 1]], bool))
    assert game.n_evaluations == 2 and table.calls == 2  # nothing evaluated on failure
    scored, values = game.scored()
    assert scored.shape == (2, 4) and values.tolist() == [1.0, 2.0]


def test_known_values_are_free_and_nested_budgets_share_the_cache():
    table = TableGame(np.arange(8.0))
    outer = BudgetedGame(table, None, known=known_values(3, full=100.0))
    assert outer(np.ones((1, 3), bool))[0] == 100.0 and outer.n_evaluations == 0
    outer(np.array([[1, 0, 0]], bool))
    inner = as_budgeted(outer, 1)
    inner(np.array([[1, 0, 0], [1, 1, 1]], bool))  # both already known
    assert inner.n_evaluations == 0
    inner(np.array([[0, 1, 0]], bool))
    assert inner.n_evaluations == 1 and outer.n_evaluations == 2


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("budget", [24, 60])
def test_every_estimator_respects_its_budget(name, budget):
    table = layer_like(6, 0)
    options = {"surrogate": "quadratic"} if name in ("paper", "surrogate_shapley", "surrogate_cv") else {}
    res = ESTIMATORS[name](table, budget, np.random.default_rng(1), **options)
    assert table.calls == res.n_evaluations <= budget  # the game saw each distinct mask once
    assert res.values.shape == res.stderr.shape == (6,)
    assert np.all(np.isfinite(res.values))
