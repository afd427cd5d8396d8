"""Which layers each method of the ``compare`` stage drops at each k, and what choosing them cost.

Baselines are scored on the calibration windows once (checkpointed in a :class:`PartStore`, then read
back); ``shapley`` and ``select`` read their stages' outputs. Cost is counted as LLM evaluations and
layer passes (:mod:`shapprune.baselines.cost`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from shapprune.baselines import LayerScores, cost, from_values, layer_scores
from shapprune.checkpoint import PartStore
from shapprune.config import Params
from shapprune.streams import stream
from shapprune.surgery import num_layers
from tasks.shared.artifacts import read_masks, read_windows
from tasks.shared.contracts import ScoringSummary, SelectionTable, ShapleyTable
from tasks.shared.paths import Paths


@dataclass
class MethodSets:
    """What one method drops at each ``k``, its per-layer ranking (None for select) and what scoring it cost."""

    method: str
    sets: dict[int, list[int]]
    rank: np.ndarray | None  # int[L]; 1 = removed first
    seconds: float | None  # wall-clock time to score the layers for every k together (None: unknown)
    llm_evaluations: dict[int, int | None]  # per k: forward passes of (masked) models on calibration text
    notes: list[str] = field(default_factory=list)
    layer_forwards: dict[int, int | None] = field(default_factory=dict)  # per k: kept layers summed over them


def ranks_of(result: LayerScores) -> np.ndarray:
    """``int[L]`` removal rank per layer (1 = removed first)."""
    return np.argsort(result.ranking()) + 1


def result_record(result: LayerScores, seconds: float) -> dict:
    """A JSON record of a criterion's result (to resume without rescoring)."""
    return {
        "scores": [float(x) if math.isfinite(x) else None for x in result.scores],
        "order": result.order,
        "chosen": {str(k): v for k, v in result.chosen.items()},
        "set_valued": result.set_valued,
        "info": result.info,
        "seconds": seconds,
    }


def result_from_record(method: str, rec: dict) -> tuple[LayerScores, float]:
    scores = np.array([np.inf if x is None else x for x in rec["scores"]], dtype=np.float64)
    chosen = {int(k): list(v) for k, v in rec["chosen"].items()}
    result = LayerScores(method, scores, rec["order"], chosen, rec["set_valued"], rec["info"])
    return result, rec["seconds"]


def baseline_sets(method: str, result: LayerScores, seconds: float, ks: list[int]) -> MethodSets:
    """A baseline's sets at every ``k`` it recorded (an oracle over its cap records none)."""
    sets, notes = {}, []
    for k in ks:
        try:
            sets[k] = result.drop(k)
        except ValueError as err:
            notes.append(f"{method}, k={k}: {err}")
    evals = {k: cost.llm_evaluations(method, result.n_layers, k, result.info) for k in sets}
    forwards = {k: cost.layer_passes(method, result.n_layers, k) for k in sets}
    return MethodSets(method, sets, ranks_of(result), seconds, evals, notes, forwards)


def shapley_sets(paths: Paths, n_layers: int, ks: list[int]) -> MethodSets:
    """Drop the ``k`` lowest values of ``estimate_shapley``'s table; its cost is the scored masks."""
    result = from_values("shapley", ShapleyTable.read(paths.shapley_json, n_layers).values)
    scoring = ScoringSummary.read(paths.metrics_file("score_masks"))
    evals = dict.fromkeys(ks, scoring.n_masks)  # one set of scored masks serves every k
    forwards = dict.fromkeys(ks, scored_layer_forwards(paths, n_layers))
    sets = {k: result.drop(k) for k in ks}
    return MethodSets("shapley", sets, ranks_of(result), scoring.seconds, evals, [], forwards)


def scored_layer_forwards(paths: Paths, n_layers: int) -> int | None:
    """Kept layers summed over the masks score_masks scored (None when they are not there)."""
    return int(read_masks(paths.scores, n_layers)[1].sum()) if paths.scores.is_file() else None


def select_sets(paths: Paths, n_layers: int, ks: list[int]) -> MethodSets:
    """The sets ``select`` chose and verified; its cost is the scored masks plus its verification evaluations."""
    selection = SelectionTable.read(paths.select_json).require(paths.select_json, n_layers)
    chosen = selection.chosen
    missing = [k for k in ks if k not in chosen]
    notes = [f"select, k={k}: not searched (select.n_drops is {selection.n_drops}); rerun select" for k in missing]
    design = selection.design_evaluations(paths.metrics_file("score_masks"))
    scored_seconds = ScoringSummary.read(paths.metrics_file("score_masks")).seconds if design else 0.0
    seconds = (0.0 if math.isnan(scored_seconds) else scored_seconds) + selection.seconds
    total = design + math.ceil(selection.equivalent_evaluations - 1e-9)  # shared by every k; screening at its cost
    sets = {k: chosen[k] for k in ks if k in chosen}
    own = selection.kept_layers
    design_forwards = scored_layer_forwards(paths, n_layers) if design else 0
    forwards = None if own is None or design_forwards is None else design_forwards + int(own)
    return MethodSets("select", sets, None, seconds, dict.fromkeys(sets, total), notes, dict.fromkeys(sets, forwards))


def method_sets(params: Params, paths: Paths, method: str, model, ks: list[int], store: PartStore) -> MethodSets:
    """The layers ``method`` drops at each ``k`` (baselines scored on the calibration windows once, then read back)."""
    n_layers = num_layers(model)
    if method == "select":
        return select_sets(paths, n_layers, ks)
    if method == "shapley":
        return shapley_sets(paths, n_layers, ks)
    record = store.get(f"score-{method}")
    if record is None or record["ks"] != ks:
        start = time.perf_counter()
        try:
            result = layer_scores(
                method,
                model,
                read_windows(paths.calibration),
                n_drops=ks,
                rng=stream(params.base.seed, "baseline"),  # as score_layers draws it
                **params.score_layers.criterion_options(),
            )
        except ValueError as err:  # e.g. Taylor+'s protected layers leave too few: the other methods go on
            print(f"{method}: not compared ({err})")
            return MethodSets(method, {}, None, None, {}, [f"{method}: not compared ({err})"])
        record = result_record(result, time.perf_counter() - start) | {"ks": ks}
        store.put(f"score-{method}", record)
    result, seconds = result_from_record(method, record)
    print(f"{method}: removes first {result.ranking()[: max(ks)].tolist()} ({seconds:.1f} s)")
    return baseline_sets(method, result, seconds, ks)
