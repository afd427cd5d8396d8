"""Search over layer masks on a predictor of their utility: beam search and greedy removal (beam width 1)."""

from __future__ import annotations

import numpy as np

from shapprune.estimators.regressors import Predictor
from shapprune.types import Mask, Utility


def _children(beam: Mask) -> Mask:
    """Every mask that drops one more kept layer from a mask of ``beam``, deduplicated: ``bool[m, L]``."""
    rows, cols = np.nonzero(beam)  # one child per kept layer of each beam mask
    children = beam[rows].copy()
    children[np.arange(len(rows)), cols] = False
    return np.unique(children, axis=0)  # sorted rows: a deterministic order for ties


def top_rows(masks: Mask, values: Utility, n: int) -> tuple[Mask, Utility]:
    """The ``n`` rows with the highest values (ties keep the given row order)."""
    order = np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")[:n]
    return masks[order], np.asarray(values, dtype=np.float64)[order]


def beam_search(predict: Predictor, n_layers: int, n_drop: int, width: int) -> tuple[Mask, Utility]:
    """Drop ``n_drop`` layers one at a time, keeping the ``width`` best masks by predicted utility after each step.

    Returns the final beam, best first: ``bool[<=width, L]`` and the predicted utilities ``float[<=width]``.
    """
    if not 0 <= n_drop < n_layers:
        raise ValueError(f"select: cannot drop {n_drop} of {n_layers} layers; choose 1..{n_layers - 1}")
    if width < 1:
        raise ValueError(f"select: beam width must be at least 1, got {width}")
    beam, values = np.ones((1, n_layers), dtype=bool), np.asarray(predict(np.ones((1, n_layers), dtype=bool)))
    for _ in range(n_drop):
        children = _children(beam)
        beam, values = top_rows(children, predict(children), width)
    return beam, values


def greedy_removal(predict: Predictor, n_layers: int, n_drop: int) -> tuple[Mask, Utility]:
    """SLEB-style greedy removal on the predictor (a beam of width 1): ``bool[1, L]`` and its predicted utility."""
    return beam_search(predict, n_layers, n_drop, 1)
