"""Iterative Shapley pruning on the LLM: estimate, drop the lowest ``step`` layers, re-estimate on the smaller model.

Each round spends ``budget_per_round`` LLM evaluations (prefix reuse within a round) with the named
estimator on the layers still present. The removal order is nested, so one run to ``max(n_drops)`` gives
every smaller set. The per-layer score is the round in which a layer was removed (never-removed layers
follow, by their last round's contribution).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from shapprune.baselines.base import LayerScores, check_n_drop, prefix_sets
from shapprune.estimators.iterative import iterative_removal
from shapprune.game import LayerGame
from shapprune.surgery import num_layers
from shapprune.types import TokenWindows


def iterative_shapley_scores(
    model: nn.Module,
    windows: TokenWindows,
    n_drops: Sequence[int],
    rng: np.random.Generator | None = None,
    batch_size: int = 16,
    cache_mib: float = 512.0,
    estimator: str = "surrogate_cv",
    budget_per_round: int = 128,
    step: int = 1,
) -> LayerScores:
    """Remove layers ``step`` at a time up to ``max(n_drops)``, re-estimating contributions every round."""
    if not n_drops:
        raise ValueError("iterative_shapley: pass the numbers of layers to remove (n_drops)")
    n = num_layers(model)
    for k in n_drops:
        check_n_drop(int(k), n)
    game = LayerGame(model, windows, "ppl_ratio", batch_size, prefix_reuse=True, cache_mib=cache_mib)
    rng = rng if rng is not None else np.random.default_rng(0)
    result = iterative_removal(game, max(n_drops), estimator, budget_per_round, rng, step=step, full_value=1.0)
    last = result.rounds[-1]
    survivors = np.array(result.players[-1])
    rest = [int(survivors[i]) for i in last.ranking() if int(survivors[i]) not in result.order]
    order = result.order + rest
    scores = np.empty(n)
    scores[order] = np.arange(n, dtype=np.float64)
    return LayerScores(
        "iterative_shapley",
        scores,
        order=order,
        chosen=prefix_sets(np.array(order), n_drops),
        info={
            "estimator": estimator,
            "budget_per_round": budget_per_round,
            "step": step,
            "rounds": len(result.rounds),
            "llm_evaluations": result.n_evaluations,
            "first_round": {"values": result.rounds[0].values.tolist(), "stderr": result.rounds[0].stderr.tolist()},
        },
    )
