"""Prefect tasks of the ``prune`` stage: which layers to drop (from the upstream tables), then drop and save."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel

from shapprune.config import ConfigError, Prune
from shapprune.models import load_model, parameter_count, save_model
from shapprune.prune import PruningChoice, drop_lowest
from shapprune.speed import measure_layer_cost, measure_speedup, probe_ids
from shapprune.surgery import keep_layers, num_layers
from shapprune.targets import CostModel, ModelStructure, reached, read_structure
from tasks.shared.contracts import LayerTable, ScoringSummary, SelectionTable, ShapleyTable, TargetReached
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
def prune_model(model_dir: Path, keep: np.ndarray, check_speed: bool = False) -> tuple[PreTrainedModel, Any, dict]:
    """Load ``model_dir`` and keep the layers where ``keep`` (bool[L]) is True; returns the model, its tokenizer
    and the parameter counts before and after. ``check_speed``: also time one layer against the non-layer parts
    and the pruned model's prefill against the full model's (``counts["speed"]``, :mod:`shapprune.speed`)."""
    model, tokenizer = load_model(str(model_dir))
    before = parameter_count(model)
    full = copy.deepcopy(model) if check_speed else None
    keep_layers(model, keep)
    counts: dict = {
        "parameters_before": before,
        "parameters_after": parameter_count(model),
        "n_layers_after": num_layers(model),
    }
    if full is not None:
        counts["speed"] = speed_check(full, model)
    return model, tokenizer, counts


def speed_check(full: PreTrainedModel, pruned: PreTrainedModel) -> dict:
    """The measured side of a speedup: one layer's cost over the non-layer parts' on the full model, and the
    pruned model's prefill speedup over the full model's (min / median / max; a few seconds)."""
    ids = probe_ids(full)
    return {
        "measured_layer_cost": measure_layer_cost(full, ids).as_dict(),
        "measured_prefill": measure_speedup(full, pruned, ids),
    }


@task(name="save-pruned", cache_policy=NO_CACHE)
def save_pruned(model: PreTrainedModel, tokenizer: Any, out: Path) -> None:
    """``save_pretrained`` of the pruned model and its tokenizer into ``out`` (``data/pruned``)."""
    save_model(model, tokenizer, out)


def model_structure(model_dir: Path) -> ModelStructure:
    """The saved model's exact parameter counts (safetensors headers), for ``prune.target``."""
    try:
        return read_structure(model_dir)
    except (OSError, ValueError) as err:
        raise ConfigError(f"prune.target: cannot count the parameters of {model_dir} ({err})") from None


def target_record(cfg: Prune, structure: ModelStructure, dropped: list[int], dtype: str) -> dict:
    """``pruning.json``'s ``target``: what was asked and what removing ``dropped`` reaches (deterministic)."""
    assert cfg.target is not None
    cost = cfg.target.layer_cost
    return {
        "asked": cfg.target.target().describe(),
        "spec": cfg.target.model_dump(exclude_none=True),
        "dtype": dtype,
        "cost_model": "matrix multiplies per token" if cost is None else f"layer cost {cost:g}",
        "reached": cfg.reached(structure, dropped).as_dict(),
    }


def measured_prediction(structure: ModelStructure, dropped: list[int], speed: dict) -> float:
    """The speedup that the *measured* layer cost (its median) predicts for ``dropped``."""
    cost = CostModel.uniform(speed["measured_layer_cost"]["layer_cost"]["median"], structure.n_layers)
    return reached(structure, dropped, 2, cost).speedup


def target_metrics(metrics: dict) -> dict[str, float]:
    """The numbers of ``data/metrics/prune.json`` that MLflow takes, flat."""
    out = {
        f"target_{k}": float(metrics[k])
        for k in (
            "n_drop",
            "kept_params",
            "kept_fraction",
            "size_mb",
            "predicted_speedup",
            "predicted_speedup_at_measured_cost",
        )
        if k in metrics
    }
    if "measured_prefill" in metrics:
        for stat, v in metrics["measured_prefill"]["speedup"].items():
            out[f"measured_speedup_{stat}"] = float(v)
        for stat, v in metrics["measured_layer_cost"]["layer_cost"].items():
            out[f"measured_layer_cost_{stat}"] = float(v)
    return out


def target_summary(target: dict, metrics: dict) -> str:
    """The stage's lines on the target: what was reached, and the speed measured after the cut."""
    line = f"Target: {TargetReached.from_dict(target).line()}"
    if "measured_prefill" in metrics:
        sp, lc = metrics["measured_prefill"]["speedup"], metrics["measured_layer_cost"]["layer_cost"]
        line += (
            f"\nMeasured here: prefill speedup {sp['median']:.2f}x (min {sp['min']:.2f}, max {sp['max']:.2f}, "
            f"{metrics['measured_prefill']['repeats']} repeats); one layer costs {lc['median']:.3f} of the non-layer "
            f"parts (min {lc['min']:.3f}, max {lc['max']:.3f}, {metrics['measured_layer_cost']['windows']} windows), "
            f"which predicts {metrics['predicted_speedup_at_measured_cost']:.2f}x."
        )
    return line
