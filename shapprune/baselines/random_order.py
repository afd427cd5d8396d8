"""Random baseline: a seeded permutation of the layers (removed in that order)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from shapprune.baselines.base import LayerScores, ranked
from shapprune.surgery import num_layers
from shapprune.types import TokenWindows


def random_scores(
    model: nn.Module, windows: TokenWindows, n_drops: Sequence[int] = (), rng: np.random.Generator | None = None
) -> LayerScores:
    """Score = position in a permutation drawn from ``rng`` (required: randomness is explicit)."""
    if rng is None:
        raise ValueError("random: pass rng=np.random.default_rng(seed); randomness is always explicit")
    position = np.empty(num_layers(model))
    position[rng.permutation(len(position))] = np.arange(len(position), dtype=float)
    return ranked("random", position, n_drops)
