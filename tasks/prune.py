"""Prefect tasks of the ``prune`` stage: which layers to drop (from the upstream tables), then drop and save."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError
from shapprune.models import load_model, parameter_count, save_model
from shapprune.prune import PruningChoice, drop_lowest
from shapprune.surgery import keep_layers, num_layers
from tasks.shared.contracts import LayerTable, ScoringSummary, SelectionTable, ShapleyTable
from tasks.shared.paths import Paths


def _recorded(what: str, chosen: dict[int, list[int]], n_layers: int, k: int, fix: str) -> PruningChoice:
    if k not in chosen:
        raise ConfigError(f"prune: {what} k in {sorted(chosen)} but prune asks for {k}; {fix}")
    dropped = chosen[k]
    return PruningChoice(dropped, [i for i in range(n_layers) if i not in dropped], math.nan)


def choose_layers(
    paths: Paths, method: str, n_drop_of: Callable[[int], int], min_z: float = 2.0
) -> tuple[str, int, PruningChoice]:
    """The layers ``prune`` drops: select's choice, the Shapley table (boundary check) or a baseline's recorded set.

    ``n_drop_of(n_layers)`` resolves ``prune.n_drop`` / ``prune.ratio``; the Shapley boundary is separated above
    ``min_z`` combined standard errors (``estimate_shapley.boundary_z``). Returns (table method, L, choice);
    a recorded set has ``boundary_z`` nan (no standard errors).
    """
    if method == "select":
        sel = SelectionTable.read(paths.select_json).require(paths.select_json)
        fix = "set select.n_drops to null (prune's k) or include it, and rerun `dvc repro select`"
        return (
            "select",
            sel.n_layers,
            _recorded("select searched", sel.chosen, sel.n_layers, n_drop_of(sel.n_layers), fix),
        )
    if method == "shapley":
        table = ShapleyTable.read(paths.shapley_json)
        choice = drop_lowest(table.values, table.stderr, n_drop_of(table.n_layers), min_z)
        return table.estimator, table.n_layers, choice
    table = LayerTable.read(paths.layer_scores_json)
    if table.method != method:
        raise ConfigError(
            f"{paths.layer_scores_json}: holds '{table.method}' scores but prune.method is '{method}'; "
            "rerun `dvc repro score_layers`"
        )
    fix = "raise score_layers.max_drop_ratio (or oracle_max_subsets for oracle) and rerun score_layers"
    return (
        method,
        table.n_layers,
        _recorded(f"{method} recorded layer sets for", table.chosen, table.n_layers, n_drop_of(table.n_layers), fix),
    )


def llm_evaluations(paths: Paths, method: str) -> int | None:
    """LLM evaluations spent choosing the layers: the scored masks (select, shapley) plus select's own, or
    what a baseline recorded; None where nothing recorded it."""
    scored = paths.metrics_file("score_masks")
    if method == "select":
        table = SelectionTable.read(paths.select_json)
        return table.design_evaluations(scored) + math.ceil(table.equivalent_evaluations - 1e-9)
    if method == "shapley":
        return ScoringSummary.read(scored).n_masks
    spent = LayerTable.read(paths.layer_scores_json).raw.get("llm_evaluations")
    return None if spent is None else int(spent)


@task(name="prune-and-save", cache_policy=NO_CACHE)
def prune_and_save(paths: Paths, keep: np.ndarray) -> dict:
    """Load ``data/model``, keep the layers where ``keep`` (bool[L]) is True, save to ``data/pruned``."""
    model, tokenizer = load_model(str(paths.model))
    before = parameter_count(model)
    keep_layers(model, keep)
    save_model(model, tokenizer, paths.pruned)
    return {
        "parameters_before": before,
        "parameters_after": parameter_count(model),
        "n_layers_after": num_layers(model),
    }
