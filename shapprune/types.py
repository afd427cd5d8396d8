"""Named array types used across the package.

A *mask* keeps (True) or drops (False) each decoder layer; a batch of masks is ``bool[n, L]``.
A *utility* is the game's value of a mask, ``float[n]``.
"""

from __future__ import annotations

from typing import Annotated, Protocol

import numpy as np
import numpy.typing as npt

Mask = Annotated[npt.NDArray[np.bool_], "bool[n, L]"]
Utility = Annotated[npt.NDArray[np.float64], "float[n]"]
TokenWindows = Annotated[npt.NDArray[np.int64], "int64[n, seq_len]"]


class Game(Protocol):
    """A cooperative game over ``n_players`` layers: ``value(masks) -> utilities``."""

    n_players: int

    def __call__(self, masks: Mask) -> Utility: ...
