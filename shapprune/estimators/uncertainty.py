"""Uncertainty of contribution estimates: a table with confidence intervals and the pruning-boundary check."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from shapprune.prune import PruningChoice, drop_lowest
from shapprune.shapley import ShapleyResult


class BoundaryWarning(UserWarning):
    """The layers at the pruning boundary are not separated by their standard errors."""


def contribution_table(
    result: ShapleyResult, n_drop: int | None = None, layers: Sequence[int] | None = None, z: float = 1.96
) -> pd.DataFrame:
    """One row per layer: value, standard error, ``±z`` s.e. interval, rank (1 = lowest) and dropped flag."""
    n = len(result.values)
    rank = np.empty(n, dtype=np.int64)
    rank[result.ranking()] = np.arange(1, n + 1)
    table = pd.DataFrame(
        {
            "layer": np.asarray(layers if layers is not None else np.arange(n)),
            "value": result.values,
            "stderr": result.stderr,
            "ci_low": result.values - z * result.stderr,
            "ci_high": result.values + z * result.stderr,
            "rank": rank,
        }
    )
    if n_drop is not None:
        table["dropped"] = rank <= n_drop
    return table


def check_boundary(result: ShapleyResult, n_drop: int, z_min: float = 2.0) -> PruningChoice:
    """Drop the ``n_drop`` lowest; warn (:class:`BoundaryWarning`) when the last dropped and the first kept
    layer are less than ``z_min`` combined standard errors apart."""
    choice = drop_lowest(result.values, result.stderr, n_drop, z_min)
    if not choice.separated:
        order = result.ranking()
        last, first = int(order[n_drop - 1]), int(order[n_drop])
        warnings.warn(
            f"pruning boundary not resolved: dropped layer {last} and kept layer {first} differ by "
            f"{choice.boundary_z:.2f} standard errors (< {z_min:g}); raise the evaluation budget",
            BoundaryWarning,
            stacklevel=2,
        )
    return choice
