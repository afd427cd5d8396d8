"""Iterative pruning re-estimates on the smaller game: it keeps one of two stand-in layers where one-shot drops both."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.estimators.iterative import RestrictedGame, iterative_removal
from shapprune.game import AdditiveGame
from shapprune.shapley import all_masks, exact_shapley
from shapprune.table_game import TableGame


def redundant_pair_game() -> TableGame:
    """Players 0 and 1 stand in for each other (worth 1.0 together or alone); players 2..5 add 0.6 each."""
    masks = all_masks(6)
    values = (masks[:, 0] | masks[:, 1]) * 1.0 + masks[:, 2:].sum(axis=1) * 0.6
    return TableGame(values.astype(float))


def test_restricted_game_fixes_removed_players_absent():
    game = AdditiveGame(np.array([1.0, 2.0, 4.0, 8.0]))
    sub = RestrictedGame(game, np.array([1, 3]), 4)
    assert sub.n_players == 2
    np.testing.assert_allclose(sub(np.array([[True, True], [False, True], [False, False]])), [10.0, 8.0, 0.0])


def test_one_shot_drops_both_stand_ins_iterative_keeps_one():
    game = redundant_pair_game()
    one_shot = exact_shapley(game, 6)  # 0 and 1 share their worth: 0.5 each, below 0.6
    assert sorted(np.argsort(one_shot)[:2].tolist()) == [0, 1]
    result = iterative_removal(game, 2, "permutation", 200, np.random.default_rng(0))
    assert len(set(result.order[:2]) & {0, 1}) == 1  # the survivor's worth rises to 1.0 once its twin is gone
    assert result.players[0] == list(range(6)) and len(result.players[1]) == 5


def test_additive_game_gives_the_one_shot_order_and_respects_the_budget():
    weights = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2])
    calls = []

    def game(masks):
        calls.append(len(masks))
        return AdditiveGame(weights)(masks)

    game.n_players = 6  # type: ignore[attr-defined]
    result = iterative_removal(game, 3, "stratified", 40, np.random.default_rng(1), step=1, full_value=weights.sum())
    assert result.order == [1, 5, 3]
    assert result.dropped(2) == [1, 5]
    assert all(r.n_evaluations <= 40 for r in result.rounds) and result.n_evaluations == sum(calls) <= 3 * 40


def test_bad_arguments_are_refused():
    game = AdditiveGame(np.ones(4))
    with pytest.raises(ValueError, match="choose 1..3"):
        iterative_removal(game, 4, "permutation", 20, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 1 layer per round"):
        iterative_removal(game, 1, "permutation", 20, np.random.default_rng(0), step=0)
