"""Gromov et al.'s angular distance: drop the block of ``n`` consecutive layers whose input and output point the most
alike, ``d(l, n) = mean over tokens of arccos(cos(h_l, h_{l+n})) / pi``.

The paper uses the last token of each sequence; here every token of every window counts (more signal from
a few calibration windows). The per-layer score is ``d(l, 1)``, the angle across layer ``l`` alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from shapprune.baselines.base import LayerScores, check_n_drop
from shapprune.baselines.hidden import mean_cosines
from shapprune.types import TokenWindows


def block_distances(angles: np.ndarray, n_drop: int) -> np.ndarray:
    """``float[L - n + 1]``: ``d(l, n)`` for every start ``l`` of a block of ``n`` layers (``angles`` is [L+1, L+1])."""
    n_layers = angles.shape[0] - 1
    check_n_drop(n_drop, n_layers)
    starts = np.arange(n_layers - n_drop + 1)
    return angles[starts, starts + n_drop]


def best_block(angles: np.ndarray, n_drop: int) -> list[int]:
    """The ``n_drop`` consecutive layers with the smallest angular distance (earliest start on ties)."""
    start = int(np.argmin(block_distances(angles, n_drop)))
    return list(range(start, start + n_drop))


def select(model: nn.Module, windows: TokenWindows, n_drop: int, batch_size: int = 16) -> list[int]:
    """The contiguous block of ``n_drop`` layers to remove."""
    _, angles = mean_cosines(model, windows, batch_size)
    return best_block(angles, n_drop)


def angular_scores(
    model: nn.Module, windows: TokenWindows, n_drops: Sequence[int] = (), batch_size: int = 16
) -> LayerScores:
    """Per-layer ``d(l, 1)`` and, for each ``k`` in ``n_drops``, the best block of ``k`` layers."""
    _, angles = mean_cosines(model, windows, batch_size)  # [L+1, L+1]
    single = block_distances(angles, 1)
    chosen = {int(k): best_block(angles, int(k)) for k in n_drops}
    blocks = {str(k): block_distances(angles, int(k)).tolist() for k in n_drops}
    return LayerScores("angular", single, chosen=chosen, set_valued=True, info={"block_distance": blocks})
