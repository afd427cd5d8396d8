import numpy as np

from shapprune.shapley import all_masks, exact_shapley
from shapprune.table_game import TableGame
from tests.estimators.games import pairwise


def test_table_game_reads_rows_in_all_masks_order_and_counts_calls():
    game = pairwise(5, 0)
    table = TableGame(game(all_masks(5)))
    masks = np.random.default_rng(0).random((7, 5)) < 0.5
    np.testing.assert_allclose(table(masks), game(masks))
    assert table.calls == 7 and table.n_players == 5
    np.testing.assert_allclose(table.shapley(), exact_shapley(game, 5), atol=1e-12)
