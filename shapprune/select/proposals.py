"""What the scoring rounds (``shapprune/rounds.py``) measure after each round: the surrogate's best sets."""

from __future__ import annotations

import numpy as np

from shapprune.estimators.budget import mask_key
from shapprune.estimators.regressors import Predictor
from shapprune.select.blocks import best_blocks
from shapprune.select.search import beam_search, greedy_removal
from shapprune.types import Mask


def search_proposals(predict: Predictor, n_layers: int, k: int, width: int, count: int) -> Mask:
    """Up to ``count`` distinct sets of ``k`` layers to drop, best first: the beam search's best, the best
    contiguous block, greedy removal's, then the beam's runners-up (``bool[<=count, L]``, kept layers)."""
    beam = beam_search(predict, n_layers, k, max(width, count))[0]
    rows = [beam[0], *best_blocks(predict, n_layers, k, 1)[0], *greedy_removal(predict, n_layers, k)[0], *beam[1:]]
    out: dict[bytes, np.ndarray] = {}
    for row in rows:
        out.setdefault(mask_key(row), row)
    return np.stack(list(out.values())[:count])
