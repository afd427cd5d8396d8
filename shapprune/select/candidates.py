"""Candidate masks for a number of dropped layers: where they came from, predicted and measured utility.

Sources, in the order their first proposals are verified: ``ranking`` (drop the ``k`` lowest
contributions), ``greedy`` (greedy removal on the surrogate), ``beam`` (beam search on the surrogate),
``block`` (contiguous blocks of ``k`` layers ranked by the surrogate) and ``scored`` (the best masks
already scored on the LLM that drop exactly ``k`` layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from shapprune.estimators.budget import mask_key
from shapprune.types import Mask, Utility

SOURCES = ("ranking", "greedy", "beam", "block", "scored")


@dataclass
class Candidate:
    """One mask proposed for ``n_drop`` dropped layers, with what is known about it."""

    mask: np.ndarray  # bool[L]
    sources: list[str]
    predicted: float  # surrogate prediction in ``round`` (before the mask was measured, if it was)
    round: int  # the last round that proposed it (the round it was verified in, when verified)
    calibration: float = math.nan  # utility on the calibration windows (LLM), when measured
    validation: float = math.nan  # utility on the validation windows (LLM), when measured
    verified: bool = False
    key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.mask = np.asarray(self.mask, dtype=bool)
        self.key = mask_key(self.mask)

    @property
    def n_drop(self) -> int:
        return int((~self.mask).sum())

    @property
    def dropped(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.mask)]

    @property
    def bits(self) -> str:
        """``"1101..."``: character i is 1 when layer i is kept."""
        return "".join("1" if b else "0" for b in self.mask)

    def record(self) -> dict:
        """A flat, JSON-friendly row (NaN for what was not measured)."""
        return {
            "n_drop": self.n_drop,
            "bits": self.bits,
            "dropped": self.dropped,
            "sources": ",".join(self.sources),
            "predicted": float(self.predicted),
            "calibration": float(self.calibration),
            "validation": float(self.validation),
            "round": int(self.round),
            "verified": bool(self.verified),
        }


def ranking_mask(contributions: np.ndarray, n_layers: int, n_drop: int) -> Mask:
    """Drop the ``n_drop`` lowest contributions (ties by layer index): ``bool[1, L]``."""
    values = np.asarray(contributions, dtype=np.float64)
    if len(values) != n_layers:
        raise ValueError(f"select: {len(values)} contributions for a {n_layers}-layer model; rerun estimate_shapley")
    mask = np.ones((1, n_layers), dtype=bool)
    mask[0, np.lexsort((np.arange(n_layers), values))[:n_drop]] = False
    return mask


def best_scored(masks: Mask, values: Utility, n_drop: int, n: int, exclude: set[bytes]) -> tuple[Mask, Utility]:
    """The ``n`` best already-measured masks that drop exactly ``n_drop`` layers, except the ``exclude`` keys."""
    masks = np.asarray(masks, dtype=bool)
    values = np.asarray(values, dtype=np.float64)
    rows = [
        r
        for r in np.flatnonzero((masks.shape[1] - masks.sum(axis=1) == n_drop) & np.isfinite(values))
        if mask_key(masks[r]) not in exclude
    ]
    rows = sorted(rows, key=lambda r: (-values[r], r))[:n]
    return masks[rows].reshape(len(rows), masks.shape[1]), values[rows]
