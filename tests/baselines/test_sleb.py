"""SLEB: greedy steps equal brute-force argmins, nested sets, determinism, identity layer removed first."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.baselines import layer_scores
from shapprune.baselines.ppl import drop_one_nll
from shapprune.baselines.sleb import game_order, greedy_order, select
from shapprune.game import AdditiveGame, LayerGame, PairwiseGame
from shapprune.scoring import masked_nll


def test_each_step_is_the_brute_force_argmin(tiny_model, windows):
    order, step_nll, _ = greedy_order(tiny_model, windows, 3, batch_size=2)
    keep = np.ones(6, dtype=bool)
    for layer, nll in zip(order, step_nll):
        cands = np.flatnonzero(keep)
        costs = []
        for c in cands:
            m = keep.copy()
            m[c] = False
            costs.append(masked_nll(tiny_model, windows, m, batch_size=2).mean)
        assert layer == cands[int(np.argmin(costs))] and nll == min(costs)
        keep[layer] = False
    assert order[0] == int(np.argmin(drop_one_nll(tiny_model, windows, batch_size=2)))  # step 1 = ppl criterion


@pytest.mark.slow  # several seconds: the full tier runs it
def test_sets_are_nested_scores_follow_the_order_and_runs_repeat(tiny_model, windows):
    a = layer_scores("sleb", tiny_model, windows, [1, 2, 3], batch_size=2)
    b = layer_scores("sleb", tiny_model, windows, [1, 2, 3], batch_size=2)
    assert a.chosen == b.chosen and a.set_valued and sorted(a.order) == list(range(6))
    assert a.drop(1) == [a.order[0]] and set(a.drop(2)) < set(a.drop(3))
    np.testing.assert_array_equal(np.argsort(a.scores), a.order)


@pytest.mark.slow  # several seconds: the full tier runs it
def test_identity_layer_is_removed_first(identity_model, identity_text):
    order, _, _ = greedy_order(identity_model, identity_text, 2)
    assert order[0] == 2 and select(identity_model, identity_text, 1) == [2]


def test_game_order_on_the_plain_game_is_sleb(tiny_model, windows):
    game = LayerGame(tiny_model, windows, utility="neg_log_ppl", batch_size=2)
    order, values = game_order(game, 3)
    sleb_order, step_nll, _ = greedy_order(tiny_model, windows, 3, batch_size=2)
    assert order == sleb_order and game.calls == 6 + 5 + 4
    np.testing.assert_allclose(values, -np.asarray(step_nll), rtol=1e-12)


def test_game_order_is_greedy_not_exhaustive():
    """Additive: the lightest layers go first. With a synergy between 1 and 2, greedy is not the best pair."""
    order, values = game_order(AdditiveGame(np.array([3.0, 1.0, 2.0, 5.0])), 2)
    assert order == [1, 2] and values == [10.0, 8.0]
    synergy = np.zeros((4, 4))
    synergy[1, 2] = synergy[2, 1] = 5.0  # v(all) = 14 + 5; each of 1, 2 alone costs 6, both together 7
    game = PairwiseGame(np.array([2.0, 1.0, 1.0, 10.0]), synergy)
    order, values = game_order(game, 2)
    assert order == [0, 1] and values == [17.0, 11.0]
    assert game(np.array([[True, False, False, True]]))[0] == 12.0  # the pair greedy misses
