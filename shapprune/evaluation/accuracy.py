"""Zero-shot metrics from scored choices: each item's outcome, accuracy with its standard error, and the floor a
model must beat (chance and the majority-class rate)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from shapprune.evaluation.zero_shot import MCItem


def _stderr(hits: np.ndarray) -> float:
    """Standard error of a mean of 0/1 outcomes: sqrt(p (1 - p) / (n - 1))."""
    n = hits.size
    return float(np.sqrt(hits.mean() * (1 - hits.mean()) / (n - 1))) if n > 1 else float("nan")


def item_hits(scores: pd.DataFrame, items: Sequence[MCItem]) -> tuple[np.ndarray, np.ndarray]:
    """``(hits, norm_hits)``, float[n] of 0/1 per item in ``items``' order: right by log-likelihood, per character."""
    if not items:
        raise ValueError("no items to score; pass at least one item")
    expected = {i: len(item.choices) for i, item in enumerate(items)}
    found = scores.groupby("item")["choice"].nunique().to_dict()
    if found != expected or len(scores) != sum(expected.values()):
        raise ValueError("the score table does not hold one row per (item, choice); score these very items")
    scores = scores.sort_values(["item", "choice"])
    hits, norm_hits = np.zeros(len(items)), np.zeros(len(items))
    for i, group in scores.groupby("item", sort=True):
        loglik = group["loglik"].to_numpy()
        per_char = loglik / np.maximum(group["n_chars"].to_numpy(), 1)
        hits[i] = np.argmax(loglik) == items[i].label
        norm_hits[i] = np.argmax(per_char) == items[i].label
    return hits, norm_hits


def accuracy(scores: pd.DataFrame, items: Sequence[MCItem]) -> dict[str, float]:
    """``acc`` (argmax log-likelihood), ``acc_norm`` (argmax log-likelihood per character), stderrs, ``n``."""
    hits, norm_hits = item_hits(scores, items)
    return {
        "acc": float(hits.mean()),
        "acc_stderr": _stderr(hits),
        "acc_norm": float(norm_hits.mean()),
        "acc_norm_stderr": _stderr(norm_hits),
        "n": len(items),
    }


def baselines(items: Sequence[MCItem]) -> dict[str, float]:
    """What a model that reads nothing scores: ``chance`` (the mean of 1 / choices) and ``majority`` (always the
    answer at the one position that is right most often, e.g. BoolQ's "yes")."""
    if not items:
        raise ValueError("no items to score; pass at least one item")
    labels = np.array([item.label for item in items])  # int[n]
    return {
        "chance": float(np.mean([1 / len(item.choices) for item in items])),
        "majority": float(np.bincount(labels).max() / len(labels)),
    }
