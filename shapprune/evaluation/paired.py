"""Paired differences between two models measured on the same windows and items, with bootstrap intervals.

Two pruned variants scored on the same held-out windows and the same zero-shot items differ far less
from sample to sample than their separate standard errors suggest, so the honest question, "is A really
better than B here?", is answered by resampling the *pairs*: windows (for perplexity) or items within each
task (for mean accuracy) are drawn with replacement, the same draw for both models, and the percentile
interval of the difference is reported. A difference whose interval excludes no-difference is called real.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDiff:
    """A paired difference: the observed ``estimate`` and its bootstrap interval ``[low, high]``.

    ``null`` is the value meaning no difference (1 for a perplexity ratio, 0 for an accuracy difference).
    """

    estimate: float
    low: float
    high: float
    null: float

    @property
    def real(self) -> bool:
        """Whether the interval excludes ``null`` (the difference is not within the noise)."""
        return self.low > self.null or self.high < self.null


def _interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return float(low), float(high)


def _check(level: float, n_boot: int) -> None:
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"paired bootstrap: level {level} must be in (0, 1) and n_boot {n_boot} at least 1")


def ppl_ratio(
    a: np.ndarray, b: np.ndarray, tokens_per_window: int, n_boot: int, rng: np.random.Generator, level: float = 0.95
) -> PairedDiff:
    """``PPL_a / PPL_b`` on the same windows (``a``, ``b``: float[W], each window's summed NLL), windows resampled.

    All windows predict ``tokens_per_window`` tokens, so ``log PPL`` is the mean of the per-window mean NLL.
    """
    _check(level, n_boot)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired bootstrap: two equal, non-empty lists of windows needed, got {a.shape} and {b.shape}")
    d = (a - b) / tokens_per_window  # [W] per-token log-ratio of each window
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))  # [B, W]
    low, high = _interval(d[idx].mean(axis=1), level)
    return PairedDiff(math.exp(d.mean()), math.exp(low), math.exp(high), 1.0)


def accuracy_difference(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    n_boot: int,
    rng: np.random.Generator,
    level: float = 0.95,
) -> PairedDiff:
    """``mean_acc_a - mean_acc_b`` (mean over tasks of per-task accuracy), items resampled within each task.

    ``a``, ``b``: task -> 0/1 outcome of each item, the same items in the same order for both.
    """
    _check(level, n_boot)
    if set(a) != set(b) or not a:
        raise ValueError(f"paired bootstrap: the same tasks needed, got {sorted(a)} and {sorted(b)}")
    boot, estimate = np.zeros(n_boot), 0.0
    for task in sorted(a):
        x, y = np.asarray(a[task], dtype=np.float64), np.asarray(b[task], dtype=np.float64)
        if x.shape != y.shape or not len(x):
            raise ValueError(f"paired bootstrap: task {task} has {x.shape} and {y.shape} items; score the same items")
        d = x - y  # [n]
        estimate += d.mean()
        boot += d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    low, high = _interval(boot / len(a), level)
    return PairedDiff(estimate / len(a), low, high, 0.0)


def normal_difference(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> PairedDiff:
    """``mean(b) - mean(a)`` of paired 0/1 outcomes on the same items, with its normal-approximation interval
    (the standard error of the per-item differences; no resampling, so no seed)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired difference: two equal lists of at least 2 items needed, got {a.shape} and {b.shape}")
    d = b - a  # [n]
    half = _z(level) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return PairedDiff(float(d.mean()), float(d.mean()) - half, float(d.mean()) + half, 0.0)


def mean_of_differences(diffs: list[PairedDiff], level: float = 0.95) -> PairedDiff:
    """The mean over tasks of independent normal-approximation differences (each task's items its own), with the
    interval of that mean: the standard errors add in quadrature."""
    if not diffs:
        raise ValueError("mean of differences: no task")
    z = _z(level)
    se = math.sqrt(sum(((d.high - d.low) / (2 * z)) ** 2 for d in diffs)) / len(diffs)
    mean = float(np.mean([d.estimate for d in diffs]))
    return PairedDiff(mean, mean - z * se, mean + z * se, 0.0)


def _z(level: float) -> float:
    """The two-sided normal quantile of ``level`` (1.96 at 0.95)."""
    from statistics import NormalDist

    _check(level, 1)
    return NormalDist().inv_cdf(0.5 + level / 2)
