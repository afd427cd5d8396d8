"""Choose the layers to drop from contribution estimates, and check whether the choice is resolved."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PruningChoice:
    """Which layers are dropped, and how clearly the last dropped layer beats the first kept one."""

    dropped: list[int]
    kept: list[int]
    boundary_z: float  # (first kept - last dropped) / combined standard error
    min_z: float = 2.0  # the gap, in combined standard errors, that resolves it (estimate_shapley.boundary_z)

    @property
    def separated(self) -> bool:
        """True when the boundary gap exceeds ``min_z`` combined standard errors."""
        return self.boundary_z > self.min_z

    def mask(self, n_layers: int) -> np.ndarray:
        keep = np.ones(n_layers, dtype=bool)
        keep[self.dropped] = False
        return keep


def drop_lowest(values: np.ndarray, stderr: np.ndarray, n_drop: int, min_z: float = 2.0) -> PruningChoice:
    """Drop the ``n_drop`` layers with the lowest contribution (ties broken by layer index); the boundary is
    separated when the gap exceeds ``min_z`` combined standard errors."""
    n = len(values)
    if not 1 <= n_drop < n:
        raise ValueError(f"prune: cannot drop {n_drop} of {n} layers; choose 1..{n - 1}")
    order = np.lexsort((np.arange(n), values))
    dropped, kept = sorted(order[:n_drop].tolist()), sorted(order[n_drop:].tolist())
    last, first = order[n_drop - 1], order[n_drop]
    se = math.sqrt(float(stderr[last]) ** 2 + float(stderr[first]) ** 2)
    gap = float(values[first] - values[last])
    z = gap / se if se > 0 else math.inf
    return PruningChoice(dropped, kept, z, min_z)
