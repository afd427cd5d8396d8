"""Beam search and greedy removal on a predictor, against closed-form games with a known best subset."""

from __future__ import annotations

import numpy as np

from shapprune.select import beam_search, greedy_removal, ranking_mask
from tests.select.games import best_drop, block_game


def _dropped(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(~mask)]


def test_beam_search_finds_the_block_where_ranking_and_greedy_do_not():
    game = block_game(block=(1, 4, 6), pair=(2, 5))  # the block is not contiguous: found by search alone
    assert best_drop(game, 3) == [1, 4, 6]
    beam, values = beam_search(game, game.n_players, 3, width=8)
    assert _dropped(beam[0]) == [1, 4, 6] and values[0] == game(beam[:1])[0]
    assert _dropped(ranking_mask(game.shapley(), game.n_players, 3)[0]) == [1, 2, 5]
    greedy, _ = greedy_removal(game, game.n_players, 3)
    assert _dropped(greedy[0]) == [1, 2, 5]  # the substitutes look free one at a time
    assert game(greedy)[0] < values[0]


def test_beam_is_sorted_distinct_and_of_the_right_size():
    game = block_game()
    beam, values = beam_search(game, game.n_players, 2, width=5)
    assert beam.shape == (5, game.n_players) and (beam.sum(axis=1) == game.n_players - 2).all()
    assert len({m.tobytes() for m in beam}) == 5
    assert (np.diff(values) <= 0).all()
    np.testing.assert_allclose(values, game(beam))


def test_width_one_is_greedy_and_zero_drops_is_the_full_model():
    game = block_game()
    a, _ = beam_search(game, game.n_players, 3, width=1)
    b, _ = greedy_removal(game, game.n_players, 3)
    assert np.array_equal(a, b)
    full, _ = beam_search(game, game.n_players, 0, width=4)
    assert full.all() and full.shape == (1, game.n_players)


def test_search_proposals_are_distinct_best_first_and_hold_the_best_block():
    from shapprune.select.proposals import search_proposals

    weights = np.array([5.0, 4.0, 0.1, 0.2, 3.0, 0.15, 6.0, 7.0])

    def predict(masks):
        return masks.astype(float) @ weights

    rows = search_proposals(predict, 8, 2, 4, 3)
    assert len({r.tobytes() for r in rows}) == len(rows) == 3
    assert np.flatnonzero(~rows[0]).tolist() == [2, 5]  # the two smallest weights
    assert [2, 3] in [np.flatnonzero(~r).tolist() for r in rows]  # the best contiguous block
