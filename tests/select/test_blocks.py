"""Contiguous blocks of k dropped layers, ranked by a predictor."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.select import best_blocks, contiguous_blocks
from tests.select.games import block_game


def test_every_block_of_adjacent_layers_once():
    blocks = contiguous_blocks(6, 2)
    assert blocks.shape == (5, 6)
    assert [np.flatnonzero(~m).tolist() for m in blocks] == [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]
    with pytest.raises(ValueError, match="cannot drop 6 of 6"):
        contiguous_blocks(6, 6)


def test_best_blocks_ranks_by_the_predictor():
    game = block_game()  # block (4, 5, 6): dropping it whole is the best 3-layer drop
    masks, values = best_blocks(game, game.n_players, 3, 2)
    assert np.flatnonzero(~masks[0]).tolist() == [4, 5, 6]
    assert values[0] > values[1] and masks.shape == (2, game.n_players)
