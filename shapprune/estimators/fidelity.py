"""Surrogate fidelity: held-out R², Spearman, error by stratum and on masks outside the training strata."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from shapprune.estimators.base import EstimateResult
from shapprune.surrogate import fidelity


def fidelity_report(
    pred: np.ndarray, true: np.ndarray, n_kept: np.ndarray, train_strata: Iterable[int] | None = None
) -> dict[str, Any]:
    """Fidelity of ``pred`` against ``true`` overall, per kept-layer count, and inside/outside ``train_strata``.

    Per stratum: count, RMSE, mean error (bias, predicted - true) and Spearman where defined.
    """
    pred, true, n_kept = np.asarray(pred, float), np.asarray(true, float), np.asarray(n_kept)
    ok = np.isfinite(pred) & np.isfinite(true)
    pred, true, n_kept = pred[ok], true[ok], n_kept[ok]
    by_stratum = []
    for k in np.unique(n_kept):
        sel = n_kept == k
        err = pred[sel] - true[sel]
        row = {
            "n_kept": int(k),
            "n": int(sel.sum()),
            "rmse": float(np.sqrt(np.mean(err**2))),
            "bias": float(err.mean()),
        }
        row["spearman"] = fidelity(pred[sel], true[sel])["spearman"] if sel.sum() >= 3 else float("nan")
        by_stratum.append(row)
    out: dict[str, Any] = {"overall": {**fidelity(pred, true), "n": int(len(true))}, "by_stratum": by_stratum}
    if train_strata is not None:
        inside = np.isin(n_kept, list(train_strata))
        for name, sel in (("inside_strata", inside), ("outside_strata", ~inside)):
            out[name] = {**fidelity(pred[sel], true[sel]), "n": int(sel.sum())}
    return out


def heldout_fidelity(result: EstimateResult) -> dict[str, Any] | None:
    """Fidelity of a surrogate estimator's out-of-fold predictions on the masks it scored (None without one)."""
    d = result.diagnostics
    if d.get("oof_pred") is None or "masks" not in d:
        return None
    masks = np.asarray(d["masks"], bool)
    return fidelity_report(d["oof_pred"], d["values"], masks.sum(axis=1), d.get("strata"))
