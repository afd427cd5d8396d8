"""Stage ``score_layers``: a baseline criterion's per-layer table on the calibration windows (``prune.method``).

Writes ``data/layer_scores/layer_scores.{csv,json}`` in the format of ``data/shapley`` plus, per number of
removed layers ``k``, the set the criterion removes. With ``prune.method: shapley`` or ``select`` it writes a
placeholder and loads nothing (their choices come from ``estimate_shapley`` and ``select``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prefect import flow

from shapprune.baselines import LayerScores
from shapprune.types import TokenWindows
from tasks.score_layers import score, write_layer_table, write_placeholder
from tasks.shared.artifacts import read_windows
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.model import load_stage_model
from tasks.shared.plots import contribution_bars
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker

CHOSEN_ELSEWHERE = ("shapley", "select")  # methods whose choice another stage makes: a placeholder here


@dataclass(frozen=True)
class Calibration:
    """The model the criterion scores and the calibration windows it scores it on."""

    model: object
    windows: TokenWindows


@dataclass(frozen=True)
class Skipped:
    """``prune.method`` is shapley or select: nothing scored, a placeholder written."""

    method: str


@dataclass(frozen=True)
class LayerTable:
    """The criterion's per-layer scores and the seconds they took."""

    method: str
    result: LayerScores
    seconds: float
    n_windows: int  # calibration windows scored on


class ScoreLayers:
    """The baseline criterion named in ``prune.method``, scored on the calibration windows."""

    name = "score_layers"

    def read(self, stage: Stage) -> Calibration | None:
        """The model and the calibration windows; nothing for a method chosen in another stage."""
        if stage.params.prune.method in CHOSEN_ELSEWHERE:
            return None
        model, _, _ = load_stage_model(stage.paths.model, stage.params)
        return Calibration(model, read_windows(stage.paths.calibration))

    def compute(self, stage: Stage, calibration: Calibration | None) -> LayerTable | Skipped:
        method = stage.params.prune.method
        if calibration is None:
            return Skipped(method)
        result, seconds = score(stage, method, calibration.model, calibration.windows)
        return LayerTable(method, result, seconds, len(calibration.windows))

    def write(self, stage: Stage, scored: LayerTable | Skipped) -> Figures:
        """The layer table (CSV + JSON, with the set per k) and the score bars, or the placeholder."""
        paths = stage.paths
        if isinstance(scored, Skipped):
            write_placeholder(paths.layer_scores_csv, paths.layer_scores_json, scored.method)
            return {}
        result = scored.result
        write_layer_table(
            result,
            paths.layer_scores_csv,
            paths.layer_scores_json,
            n_calibration_windows=scored.n_windows,
            seconds=scored.seconds,
        )
        finite = np.where(np.isfinite(result.scores), result.scores, np.nan)
        title = f"{scored.method} layer scores (lower = removed first)"
        bars = contribution_bars(
            finite, np.zeros_like(finite), [], title, paths.layer_scores_csv.with_name("scores.png")
        )
        return {"scores.png": bars}

    def log(self, tracker: Tracker, stage: Stage, scored: LayerTable | Skipped) -> None:
        """The method; for a criterion, both tables and the seconds."""
        tracker.log_params({"prune.method": scored.method})
        if isinstance(scored, Skipped):
            return
        tracker.log_artifact(stage.paths.layer_scores_csv)
        tracker.log_artifact(stage.paths.layer_scores_json)
        tracker.log_metrics({"seconds": scored.seconds})

    def summary(self, scored: LayerTable | Skipped) -> str:
        if isinstance(scored, Skipped):
            return f"prune.method is {scored.method}: nothing to score here (see data/{scored.method})"
        ranking = scored.result.ranking().tolist()
        return f"{scored.method}: layers from first to last removed {ranking} ({scored.seconds:.1f} s)"

    def returns(self, scored: LayerTable | Skipped) -> dict:
        if isinstance(scored, Skipped):
            return {"method": scored.method}
        ranking = scored.result.ranking().tolist()
        return {"method": scored.method, "ranking": ranking, "chosen": scored.result.chosen, "seconds": scored.seconds}


@flow(name="score_layers", log_prints=True)
def score_layers(root: str = ".") -> dict:
    return run_stage(ScoreLayers(), root)


if __name__ == "__main__":
    stage_main(score_layers)
