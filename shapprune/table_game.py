"""A game read from a table of every coalition's value (e.g. an exhaustively scored LLM sub-game)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shapprune.shapley import shapley_from_table
from shapprune.types import Mask, Utility


@dataclass
class TableGame:
    """``value(mask) = values[index(mask)]`` with bit i of the index = player i (as in ``all_masks``)."""

    values: np.ndarray  # float[2**L]
    calls: int = 0

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        n = int(round(np.log2(len(self.values))))
        if len(self.values) != 2**n:
            raise ValueError(f"a table game needs 2**L values, got {len(self.values)}")
        self.n_players = n

    def index(self, masks: Mask) -> np.ndarray:
        """Row of each mask in the table: ``int64[n]``."""
        return np.asarray(masks, dtype=np.int64) @ (np.int64(1) << np.arange(self.n_players, dtype=np.int64))

    def __call__(self, masks: Mask) -> Utility:
        self.calls += len(masks)
        return self.values[self.index(masks)]

    def shapley(self) -> np.ndarray:
        """Exact Shapley values of the table."""
        return shapley_from_table(self.values, self.n_players)
