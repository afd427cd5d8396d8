"""Contiguous blocks: drop ``k`` adjacent layers (the best subsets of real layer games are often such blocks)."""

from __future__ import annotations

import numpy as np

from shapprune.estimators.regressors import Predictor
from shapprune.select.search import top_rows
from shapprune.types import Mask, Utility


def contiguous_blocks(n_layers: int, n_drop: int) -> Mask:
    """Every mask that drops ``n_drop`` adjacent layers, in order of the first dropped layer: ``bool[L-k+1, L]``."""
    if not 1 <= n_drop < n_layers:
        raise ValueError(f"select: cannot drop {n_drop} of {n_layers} layers; choose 1..{n_layers - 1}")
    starts = np.arange(n_layers - n_drop + 1)[:, None]  # [B, 1]
    layer = np.arange(n_layers)[None, :]  # [1, L]
    return ~((layer >= starts) & (layer < starts + n_drop))


def best_blocks(predict: Predictor, n_layers: int, n_drop: int, n: int) -> tuple[Mask, Utility]:
    """The ``n`` contiguous blocks with the highest predicted utility, best first."""
    masks = contiguous_blocks(n_layers, n_drop)
    return top_rows(masks, predict(masks), n)
