"""Oracle: the best subset of ``k`` layers to remove by calibration perplexity, by exhaustive search.

Only where ``C(L, k)`` is at most a cap (one calibration forward pass per subset). The per-layer score is
the lowest calibration NLL of any enumerated subset (largest ``k``) that removes the layer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from torch import nn

from shapprune.baselines.base import LayerScores, check_n_drop
from shapprune.config import ConfigError
from shapprune.prefix import score_with_prefix_reuse
from shapprune.surgery import num_layers
from shapprune.types import TokenWindows


def check_budget(n_layers: int, n_drop: int, max_subsets: int) -> int:
    """Number of subsets; a clear error naming the fix when it exceeds ``max_subsets``."""
    check_n_drop(n_drop, n_layers)
    count = math.comb(n_layers, n_drop)
    if count > max_subsets:
        raise ConfigError(
            f"oracle: C({n_layers}, {n_drop}) = {count:,} subsets exceed the cap of {max_subsets:,} "
            "(one calibration forward pass each); raise score_layers.oracle_max_subsets or remove fewer layers"
        )
    return count


def subset_nll(
    model: nn.Module, windows: TokenWindows, n_drop: int, batch_size: int = 16, cache_mib: float = 512.0
) -> tuple[np.ndarray, np.ndarray]:
    """Every way to drop ``n_drop`` layers: ``bool[C, L]`` keep-masks and their mean calibration NLL ``float[C]``."""
    n = num_layers(model)
    combos = list(itertools.combinations(range(n), n_drop))
    masks = np.ones((len(combos), n), dtype=bool)  # [C, L]
    for row, dropped in enumerate(combos):
        masks[row, list(dropped)] = False
    nlls, _ = score_with_prefix_reuse(model, windows, masks, batch_size, cache_mib)
    return masks, np.array([x.mean for x in nlls])


def select(
    model: nn.Module,
    windows: TokenWindows,
    n_drop: int,
    max_subsets: int = 1000,
    batch_size: int = 16,
    cache_mib: float = 512.0,
) -> list[int]:
    """The best ``n_drop`` layers to remove (first in enumeration order on ties)."""
    check_budget(num_layers(model), n_drop, max_subsets)
    masks, nll = subset_nll(model, windows, n_drop, batch_size, cache_mib)
    return np.flatnonzero(~masks[int(np.argmin(nll))]).tolist()


def oracle_scores(
    model: nn.Module,
    windows: TokenWindows,
    n_drops: Sequence[int],
    max_subsets: int = 1000,
    batch_size: int = 16,
    cache_mib: float = 512.0,
) -> LayerScores:
    """Exhaustive best sets for every ``k`` in ``n_drops`` within the cap (others are skipped, listed in info)."""
    n = num_layers(model)
    feasible = [int(k) for k in n_drops if math.comb(n, int(k)) <= max_subsets]
    skipped = [int(k) for k in n_drops if int(k) not in feasible]
    if not feasible:
        check_budget(n, min(n_drops, default=1), max_subsets)  # raises with the fix
    chosen, best_nll, scores = {}, {}, np.full(n, np.nan)
    for k in sorted(feasible):
        masks, nll = subset_nll(model, windows, k, batch_size, cache_mib)
        best = int(np.argmin(nll))
        chosen[k], best_nll[str(k)] = np.flatnonzero(~masks[best]).tolist(), float(nll[best])
        dropped = ~masks  # [C, L]
        scores = np.where(dropped, nll[:, None], np.inf).min(axis=0)  # [L]
    info = {"best_ppl": {k: math.exp(v) for k, v in best_nll.items()}, "skipped_n_drops": skipped}
    return LayerScores("oracle", scores, chosen=chosen, set_valued=True, info=info)
