"""Prefect tasks of the ``prune`` stage: which layers to drop (from the upstream tables), then drop and save."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel

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


def read_choice(
    paths: Paths, method: str, n_drop_of: Callable[[int], int], min_z: float = 2.0
) -> tuple[str, int, PruningChoice]:
    """The layers ``prune`` drops: select's choice, the Shapley table (boundary check) or a baseline's recorded set.

    ``n_drop_of(n_layers)`` resolves ``prune.n_drop`` / ``prune.ratio``; the Shapley boundary is separated above
    ``min_z`` combined standard errors (``estimate_shapley.boundary_z``). Returns (table method, L, choice);
    a recorded set has ``boundary_z`` nan (no standard errors).
    """
    if method == "select":
        sel = SelectionTable.read(paths.select_json).require(paths.select_json)
        fix = "rerun `dvc repro select`: it searches prune's k (unless select.n_drops lists others: add it there)"
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
    return LayerTable.read(paths.layer_scores_json).llm_evaluations


@task(name="prune-model", cache_policy=NO_CACHE)
def prune_model(model_dir: Path, keep: np.ndarray) -> tuple[PreTrainedModel, Any, dict]:
    """Load ``model_dir`` and keep the layers where ``keep`` (bool[L]) is True; returns the model, its tokenizer
    and the parameter counts before and after."""
    model, tokenizer = load_model(str(model_dir))
    before = parameter_count(model)
    keep_layers(model, keep)
    counts = {
        "parameters_before": before,
        "parameters_after": parameter_count(model),
        "n_layers_after": num_layers(model),
    }
    return model, tokenizer, counts


@task(name="save-pruned", cache_policy=NO_CACHE)
def save_pruned(model: PreTrainedModel, tokenizer: Any, out: Path) -> None:
    """``save_pretrained`` of the pruned model and its tokenizer into ``out`` (``data/pruned``)."""
    save_model(model, tokenizer, out)
