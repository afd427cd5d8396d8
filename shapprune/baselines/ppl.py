"""Shortened-LLaMA's PPL criterion: one shot, rank layers by the calibration perplexity without each single layer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from shapprune.baselines.base import LayerScores, ranked
from shapprune.prefix import score_with_prefix_reuse
from shapprune.surgery import num_layers
from shapprune.types import TokenWindows


def drop_one_nll(model: nn.Module, windows: TokenWindows, batch_size: int = 16, cache_mib: float = 512.0) -> np.ndarray:
    """``float[L]``: mean calibration NLL (log PPL) of the model without layer ``l``."""
    n = num_layers(model)
    masks = ~np.eye(n, dtype=bool)  # [L, L], row l drops layer l
    nlls, _ = score_with_prefix_reuse(model, windows, masks, batch_size, cache_mib)
    return np.array([x.mean for x in nlls])


def ppl_scores(
    model: nn.Module, windows: TokenWindows, n_drops: Sequence[int] = (), batch_size: int = 16, cache_mib: float = 512.0
) -> LayerScores:
    """Score = log PPL without the layer (lowest removed first)."""
    nll = drop_one_nll(model, windows, batch_size, cache_mib)
    return ranked("ppl", nll, n_drops, ppl_without_layer=np.exp(nll).tolist())
