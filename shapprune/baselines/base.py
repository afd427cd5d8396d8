"""The common result of every layer-pruning criterion: per-layer scores (lower = removed first) and chosen sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shapprune.config import ConfigError


@dataclass(frozen=True)
class LayerScores:
    """One criterion's verdict on a model's decoder layers.

    ``scores[l]`` orders the layers (lower = removed first). Ranking criteria drop the ``k`` lowest;
    set-valued criteria (angular, sleb, oracle) choose a set per ``k``, stored in ``chosen``.
    """

    method: str
    scores: np.ndarray  # float[L]; lower = removed first
    order: list[int] | None = None  # removal order when the criterion removes layers one at a time
    chosen: dict[int, list[int]] = field(default_factory=dict)  # n_drop -> dropped layers (sorted)
    set_valued: bool = False  # True: only the sets in ``chosen`` are defined
    info: dict[str, Any] = field(default_factory=dict)  # criterion-specific extras (JSON-serialisable)

    @property
    def n_layers(self) -> int:
        return len(self.scores)

    def ranking(self) -> np.ndarray:
        """Layers from first to last removed: ``order`` when given, else by score (ties by index)."""
        if self.order is not None:
            return np.asarray(self.order, dtype=np.int64)
        return np.lexsort((np.arange(self.n_layers), np.asarray(self.scores, float)))

    def drop(self, n_drop: int) -> list[int]:
        """The ``n_drop`` layers this criterion removes (sorted)."""
        check_n_drop(n_drop, self.n_layers)
        if n_drop in self.chosen:
            return sorted(int(i) for i in self.chosen[n_drop])
        if self.set_valued:
            have = sorted(self.chosen)
            raise ConfigError(
                f"{self.method}: no layer set computed for n_drop={n_drop} (have {have}); "
                "ask for this n_drop when scoring (score_layers.max_drop_ratio, or oracle_max_subsets for oracle)"
            )
        return sorted(int(i) for i in self.ranking()[:n_drop])


def check_n_drop(n_drop: int, n_layers: int) -> None:
    """Raise unless ``1 <= n_drop < n_layers``."""
    if not 1 <= n_drop < n_layers:
        raise ValueError(f"cannot drop {n_drop} of {n_layers} layers; choose 1..{n_layers - 1}")


def from_values(method: str, values: np.ndarray) -> LayerScores:
    """A ranking criterion from precomputed per-layer values (e.g. a Shapley table)."""
    return LayerScores(method, np.asarray(values, dtype=np.float64))


def prefix_sets(ranking: np.ndarray, n_drops: Sequence[int]) -> dict[int, list[int]]:
    """``{k: sorted(ranking[:k])}`` for every ``k`` in ``n_drops``."""
    return {int(k): sorted(int(i) for i in ranking[:k]) for k in n_drops}


def ranked(method: str, scores: np.ndarray, n_drops: Sequence[int] = (), **info: Any) -> LayerScores:
    """A ranking criterion's result: drop the ``k`` lowest scores, with the sets for ``n_drops`` filled in."""
    base = LayerScores(method, np.asarray(scores, dtype=np.float64), info=dict(info))
    for k in n_drops:
        check_n_drop(int(k), base.n_layers)
    return LayerScores(base.method, base.scores, chosen=prefix_sets(base.ranking(), n_drops), info=base.info)
