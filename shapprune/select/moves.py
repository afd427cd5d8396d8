"""Swap moves of a layer set and the ridge model that ranks them (budgeted select's hill climbing)."""

from __future__ import annotations

import numpy as np

from shapprune.types import Mask


def features(masks: Mask) -> np.ndarray:
    """Move-ranking features: dropped layers and adjacent dropped pairs, ``float[n, 2L - 1]``."""
    dropped = ~np.asarray(masks, dtype=bool)  # [n, L]
    return np.concatenate([dropped, dropped[:, 1:] & dropped[:, :-1]], axis=1).astype(np.float64)


def fit_ranker(masks: Mask, targets: np.ndarray, ridge: float):
    """Ridge regression of ``targets`` on :func:`features` with an intercept; returns ``predict(masks)``."""
    x = features(masks)  # [n, F]
    mean_x, mean_y = x.mean(axis=0), float(targets.mean())
    xc = x - mean_x
    coef = np.linalg.solve(xc.T @ xc + ridge * len(x) * np.eye(x.shape[1]), xc.T @ (targets - mean_y))  # [F]

    def predict(candidates: Mask) -> np.ndarray:
        return (features(candidates) - mean_x) @ coef + mean_y

    return predict


def swaps(mask: np.ndarray) -> Mask:
    """Every mask that exchanges one dropped layer of ``mask`` for one kept layer: ``bool[k (L - k), L]``."""
    dropped, kept = np.flatnonzero(~mask), np.flatnonzero(mask)
    out = np.repeat(mask[None], len(dropped) * len(kept), axis=0)
    rows = np.arange(len(out))
    out[rows, np.repeat(dropped, len(kept))] = True
    out[rows, np.tile(kept, len(dropped))] = False
    return out
