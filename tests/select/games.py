"""Closed-form games whose best subset is known and is not what a contribution ranking drops."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shapprune.shapley import all_masks
from shapprune.table_game import TableGame


def block_game(
    n_players: int = 8,
    block: Sequence[int] = (4, 5, 6),
    pair: Sequence[int] = (1, 2),
    block_term: float = 0.9,
    pair_term: float = 0.3,
    pair_weight: float = 0.05,
) -> TableGame:
    """``v(S) = sum_i w_i s_i + d max(s_a, s_b) + c prod_{i in block} s_i``.

    The block's layers contribute only together (the all-present term ``c``), so each has Shapley value
    ``c / |block|``; the pair are substitutes (``d`` is lost only when both go), each with Shapley value
    ``w + d / 2``, below the block's. Every other player weighs 1. With the defaults, dropping 3 layers:
    the ranking drops the pair and one block layer (cost ``2w + d + c`` = 1.3); the best drops the
    block (cost ``c`` = 0.9), ahead of one pair layer and two block layers (``w + c`` = 0.95).
    """
    w = np.ones(n_players)
    w[list(block)] = 0.0
    w[list(pair)] = pair_weight
    x = all_masks(n_players).astype(float)  # [2**L, L]
    values = x @ w + pair_term * x[:, list(pair)].max(axis=1) + block_term * x[:, list(block)].prod(axis=1)
    return TableGame(values)


def drop_mask(n_players: int, dropped: Sequence[int]) -> np.ndarray:
    """``bool[L]`` keeping every player but ``dropped``."""
    mask = np.ones(n_players, dtype=bool)
    mask[list(dropped)] = False
    return mask


def best_drop(game: TableGame, n_drop: int) -> list[int]:
    """The exhaustive answer: the ``n_drop`` players whose removal keeps the most value."""
    masks = all_masks(game.n_players)
    rows = np.flatnonzero(masks.sum(axis=1) == game.n_players - n_drop)
    best = rows[np.argmax(game.values[rows])]
    return [int(i) for i in np.flatnonzero(~masks[best])]
