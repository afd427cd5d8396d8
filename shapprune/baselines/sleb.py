"""SLEB: iterative greedy removal; each step removes the layer whose removal gives the lowest calibration perplexity.

Greedy sets are nested, so one run to ``max(n_drops)`` yields every smaller set too. The per-layer score is
the step at which a layer is removed; layers never removed follow, ordered by their last-step perplexity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from shapprune.baselines.base import LayerScores, check_n_drop
from shapprune.prefix import score_with_prefix_reuse
from shapprune.surgery import num_layers
from shapprune.types import Game, TokenWindows


def greedy_order(
    model: nn.Module, windows: TokenWindows, n_drop: int, batch_size: int = 16, cache_mib: float = 512.0
) -> tuple[list[int], list[float], np.ndarray]:
    """Removal order, the calibration NLL after each step, and the last step's NLL per candidate ``float[L]``."""
    n = num_layers(model)
    check_n_drop(n_drop, n)
    keep = np.ones(n, dtype=bool)
    order: list[int] = []
    step_nll: list[float] = []
    last = np.full(n, np.nan)
    for _ in range(n_drop):
        candidates = np.flatnonzero(keep)  # [c]
        masks = np.repeat(keep[None], len(candidates), axis=0)  # [c, L]
        masks[np.arange(len(candidates)), candidates] = False
        nlls, _ = score_with_prefix_reuse(model, windows, masks, batch_size, cache_mib)
        means = np.array([x.mean for x in nlls])  # [c]
        best = int(np.argmin(means))  # earliest layer on ties
        last = np.full(n, np.nan)
        last[candidates] = means
        order.append(int(candidates[best]))
        step_nll.append(float(means[best]))
        keep[candidates[best]] = False
    return order, step_nll, last


def game_order(game: Game, n_drop: int) -> tuple[list[int], list[float]]:
    """SLEB's greedy removal on any game: each step drops the layer whose removal keeps the highest value.

    The removal order and the value after each step; ``sum(L - s for s < n_drop)`` calls of ``game`` (one per
    candidate mask), so on a game that repairs each mask before scoring it this is SLEB on the repaired model.
    """
    n = game.n_players
    check_n_drop(n_drop, n)
    keep = np.ones(n, dtype=bool)
    order: list[int] = []
    values: list[float] = []
    for _ in range(n_drop):
        candidates = np.flatnonzero(keep)  # [c]
        masks = np.repeat(keep[None], len(candidates), axis=0)  # [c, L]
        masks[np.arange(len(candidates)), candidates] = False
        utility = np.asarray(game(masks), dtype=float)  # [c]
        best = int(np.argmax(utility))  # earliest layer on ties
        order.append(int(candidates[best]))
        values.append(float(utility[best]))
        keep[candidates[best]] = False
    return order, values


def select(
    model: nn.Module, windows: TokenWindows, n_drop: int, batch_size: int = 16, cache_mib: float = 512.0
) -> list[int]:
    """The ``n_drop`` layers SLEB removes."""
    return sorted(greedy_order(model, windows, n_drop, batch_size, cache_mib)[0])


def sleb_scores(
    model: nn.Module, windows: TokenWindows, n_drops: Sequence[int], batch_size: int = 16, cache_mib: float = 512.0
) -> LayerScores:
    """Greedy removal up to ``max(n_drops)``; score = removal step (0 = first)."""
    if not n_drops:
        raise ValueError("sleb: pass the numbers of layers to remove (n_drops); the greedy search needs a depth")
    order, step_nll, last = greedy_order(model, windows, max(n_drops), batch_size, cache_mib)
    rest = [int(i) for i in np.argsort(last, kind="stable") if i not in order and np.isfinite(last[i])]
    full_order = order + rest
    scores = np.empty(len(full_order))
    scores[full_order] = np.arange(len(full_order), dtype=float)
    chosen = {int(k): sorted(order[:k]) for k in n_drops}
    info = {"removal_order": order, "ppl_after_step": np.exp(step_nll).tolist()}
    return LayerScores("sleb", scores, order=full_order, chosen=chosen, set_valued=True, info=info)
