"""ShortGPT's Block Influence: ``BI_l = 1 - mean over tokens of cos(h_l, h_{l+1})`` (all tokens of every window).

A layer that barely turns the residual stream has low BI and is removed first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from shapprune.baselines.base import LayerScores, ranked
from shapprune.baselines.hidden import mean_cosines
from shapprune.types import TokenWindows


def block_influence(model: nn.Module, windows: TokenWindows, batch_size: int = 16) -> np.ndarray:
    """``float[L]``: one minus the token-averaged cosine between each layer's input and output."""
    cos, _ = mean_cosines(model, windows, batch_size)  # [L+1, L+1]
    n = cos.shape[0] - 1
    return 1.0 - cos[np.arange(n), np.arange(n) + 1]


def block_influence_scores(
    model: nn.Module, windows: TokenWindows, n_drops: Sequence[int] = (), batch_size: int = 16
) -> LayerScores:
    """Rank layers by Block Influence (lowest removed first)."""
    return ranked("block_influence", block_influence(model, windows, batch_size), n_drops)
