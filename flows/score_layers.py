"""Stage ``score_layers``: a baseline criterion's per-layer table on the calibration windows (``prune.method``).

Writes ``data/layer_scores/layer_scores.{csv,json}`` in the format of ``data/shapley`` plus, per number of
removed layers ``k``, the set the criterion removes. With ``prune.method: shapley`` or ``select`` it writes a
placeholder and loads nothing (their choices come from ``estimate_shapley`` and ``select``).
"""

from __future__ import annotations

import time

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shapprune.baselines import LayerScores, layer_scores
from shapprune.streams import stream
from shapprune.surgery import num_layers
from tasks.score_layers import write_layer_table, write_placeholder
from tasks.shared.artifacts import read_windows
from tasks.shared.model import load_stage_model
from tasks.shared.paths import Paths
from tasks.shared.plots import close, contribution_bars
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


@task(name="score-layers", cache_policy=NO_CACHE)
def score(stage: Stage, method: str) -> tuple[LayerScores, float]:
    """Load the model and calibration windows and run the criterion; returns (result, seconds)."""
    cfg = stage.params.score_layers
    model, _, _ = load_stage_model(stage.paths.model, stage.params)
    windows = read_windows(stage.paths.calibration)
    start = time.perf_counter()
    result = layer_scores(
        method,
        model,
        windows,
        n_drops=cfg.n_drops(num_layers(model)),
        rng=stream(stage.params.base.seed, "baseline"),
        **cfg.criterion_options(),
    )
    return result, time.perf_counter() - start


def write(paths: Paths, method: str, result: LayerScores, seconds: float):
    """The layer table (CSV + JSON, with the set per k) and the score bars; returns the figure."""
    write_layer_table(
        result,
        paths.layer_scores_csv,
        paths.layer_scores_json,
        n_calibration_windows=len(read_windows(paths.calibration)),
        seconds=seconds,
    )
    finite = np.where(np.isfinite(result.scores), result.scores, np.nan)
    title = f"{method} layer scores (lower = removed first)"
    return contribution_bars(finite, np.zeros_like(finite), [], title, paths.layer_scores_csv.with_name("scores.png"))


def log(tracker: Tracker, paths: Paths, fig, seconds: float) -> None:
    """The bars, both tables and the seconds in MLflow."""
    tracker.log_figure(fig, "scores.png")
    close(fig)
    tracker.log_artifact(paths.layer_scores_csv)
    tracker.log_artifact(paths.layer_scores_json)
    tracker.log_metrics({"seconds": seconds})


@flow(name="score_layers", log_prints=True)
def score_layers(root: str = ".") -> dict:
    stage = Stage.open("score_layers", root)
    paths, method = stage.paths, stage.params.prune.method
    with stage.tracking() as tracker:
        tracker.log_params({"prune.method": method})
        if method in ("shapley", "select"):
            write_placeholder(paths.layer_scores_csv, paths.layer_scores_json, method)
            print(f"prune.method is {method}: nothing to score here (see data/{method})")
            return {"method": method}
        result, seconds = score(stage, method)
        fig = write(paths, method, result, seconds)
        log(tracker, paths, fig, seconds)
    ranking = result.ranking().tolist()
    print(f"{method}: layers from first to last removed {ranking} ({seconds:.1f} s)")
    return {"method": method, "ranking": ranking, "chosen": result.chosen, "seconds": seconds}


if __name__ == "__main__":
    stage_main(score_layers)
