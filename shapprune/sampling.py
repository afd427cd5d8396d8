"""Stratified Monte Carlo layer masks (strata = number of kept layers)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from shapprune.types import Mask

# The paper's strata: keep {30, 27, 24, 21, 18} of Llama-2-7B's 32 layers.
PAPER_KEEP_FRACTIONS = (30 / 32, 27 / 32, 24 / 32, 21 / 32, 18 / 32)


def strata_from_fractions(n_layers: int, fractions: Sequence[float]) -> list[int]:
    """Kept-layer counts ``round(f * L)`` for each fraction, clipped to ``[1, L - 1]``, duplicates removed.

    The full model is never a stratum: its utility is known without an LLM evaluation.
    """
    out: list[int] = []
    for f in fractions:
        k = min(n_layers - 1, max(1, int(math.floor(f * n_layers + 0.5))))
        if k not in out:
            out.append(k)
    return out


def split_counts(total: int, n_strata: int) -> list[int]:
    """Equal share of ``total`` over ``n_strata``; the remainder goes to the first strata."""
    q, r = divmod(total, n_strata)
    return [q + (1 if i < r else 0) for i in range(n_strata)]


def random_masks(n_layers: int, kept: int, count: int, rng: np.random.Generator) -> Mask:
    """``count`` masks keeping exactly ``kept`` layers chosen uniformly at random."""
    keys = rng.random((count, n_layers))  # [count, L]
    ranks = keys.argsort(axis=1).argsort(axis=1)
    return ranks < kept


def stratified_masks(
    n_layers: int,
    strata: Sequence[int],
    counts: Sequence[int],
    rng: np.random.Generator,
    unique: bool = True,
) -> Mask:
    """Masks ``bool[sum(counts), L]``: ``counts[j]`` masks that keep ``strata[j]`` layers each.

    With ``unique`` no mask repeats (each LLM evaluation is spent on a new coalition).
    """
    if len(strata) != len(counts):
        raise ValueError("sample_masks: strata and counts differ in length")
    blocks = []
    for kept, count in zip(strata, counts):
        if not 1 <= kept <= n_layers:
            raise ValueError(f"sample_masks: stratum {kept} is outside [1, {n_layers}]; fix sample_masks.strata")
        available = math.comb(n_layers, kept)
        if unique and count > available:
            from shapprune.config import ConfigError  # here: shapprune.config imports this module

            raise ConfigError(
                f"sample_masks: {count} unique masks requested with {kept} of {n_layers} layers kept, "
                f"but only {available} exist; lower the budget or set unique: false"
            )
        if not unique:
            blocks.append(random_masks(n_layers, kept, count, rng))
            continue
        seen: dict[bytes, np.ndarray] = {}
        while len(seen) < count:
            for row in random_masks(n_layers, kept, count - len(seen), rng):
                seen.setdefault(np.packbits(row).tobytes(), row)
        blocks.append(np.stack(list(seen.values())[:count]) if count else np.zeros((0, n_layers), bool))
    return np.concatenate(blocks, axis=0) if blocks else np.zeros((0, n_layers), bool)
