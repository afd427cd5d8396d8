"""Held-out splits of scored masks, stratified by the number of kept layers."""

from __future__ import annotations

import numpy as np


def stratified_split(groups: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean ``is_validation[n]``: about ``val_fraction`` of each group, at least one row left to train."""
    is_val = np.zeros(len(groups), dtype=bool)
    if val_fraction <= 0:
        return is_val
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        n_val = min(len(idx) - 1, int(round(val_fraction * len(idx))))
        if n_val > 0:
            is_val[rng.choice(idx, size=n_val, replace=False)] = True
    return is_val


def handle_nonfinite(utilities: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(keep_rows, utilities)``: ``exclude`` drops NaN/inf rows, ``clip`` maps them to the finite minimum.

    Rows are never shifted: callers index masks and utilities with the same ``keep_rows``.
    """
    finite = np.isfinite(utilities)
    if policy == "exclude":
        return finite, utilities
    if policy == "clip":
        floor = float(np.min(utilities[finite])) if finite.any() else 0.0
        floor = min(floor, 0.0)
        return np.ones(len(utilities), bool), np.where(finite, utilities, floor)
    raise ValueError(f"fit_surrogate.nonfinite: unknown policy '{policy}'; use exclude or clip")
