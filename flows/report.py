"""Stage ``report``: metrics.json for ``dvc metrics``, plot data for ``dvc plots`` and a markdown summary."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from prefect import flow

from tasks import report as rpt
from tasks.shared.contracts import EvalSummary, ScoringSummary, read_json, write_json
from tasks.shared.paths import Paths
from tasks.shared.plots import close, ppl_bars
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker, numeric_leaves


@dataclass(frozen=True)
class Report:
    """The summary's markdown, metrics.json, its flat MLflow view and the plot data."""

    text: str
    metrics: dict  # metrics.json (nested)
    flat: dict[str, float]  # the stage run's MLflow metrics
    frames: dict[str, pd.DataFrame]  # plots/report/<name>.csv
    ppl: dict[str, dict[str, float]]  # model -> corpus -> PPL, for the bar chart


def compute(paths: Paths) -> Report:
    """Read every stage's record and build the summary from them."""
    full, pruned = EvalSummary.read(paths.eval_metrics("full")), EvalSummary.read(paths.eval_metrics("pruned"))
    pruning = read_json(paths.pruned / "pruning.json")
    repaired_file = paths.eval_metrics("repaired")
    repaired = EvalSummary.read(repaired_file) if repaired_file.is_file() else None
    repair = read_json(paths.metrics_file("repair")) if repaired is not None else None
    surrogate = read_json(paths.metrics_file("fit_surrogate"))
    scoring = ScoringSummary.read(paths.metrics_file("score_masks"))
    selection = read_json(paths.select_json) if paths.select_json.is_file() else {}
    baseline = read_json(paths.layer_scores_json) if paths.layer_scores_json.is_file() else None
    compared = read_json(paths.compare_dir / "compare.json") if (paths.compare_dir / "compare.json").is_file() else {}

    select_text, select_metrics = rpt.report_section(selection, baseline)  # empty unless prune.method is select
    if compared.get("rows"):
        select_text += rpt.compare_section(paths.compare_report.read_text())
    metrics = rpt.headline_metrics(full, pruned, pruning, surrogate, scoring, repaired)
    if select_metrics:
        metrics["select"] = select_metrics
    weights = rpt.weights_line(read_json(paths.metrics_file("prepare_model")), scoring.dtype, full.dtype)
    text = rpt.summary_markdown(full, pruned, pruning, surrogate, scoring, repaired, repair, weights)
    text += f"\n{select_text}" if select_text else ""
    flat = rpt.flat_metrics(metrics, full, pruned, repaired) | select_metrics
    ppl = {"full": full.ppl, "pruned": pruned.ppl} | ({"repaired": repaired.ppl} if repaired else {})
    return Report(text, metrics, flat, rpt.plot_frames(full, pruned, repaired), ppl)


def write(paths: Paths, report: Report) -> None:
    """metrics.json, plots/report/*.csv and reports/summary.md."""
    write_json(paths.metrics, report.metrics)
    for name, frame in report.frames.items():
        (paths.plots / "report").mkdir(parents=True, exist_ok=True)
        frame.to_csv(paths.plots / "report" / f"{name}.csv", index=False)
    paths.report.parent.mkdir(parents=True, exist_ok=True)
    paths.report.write_text(report.text)


def log(tracker: Tracker, paths: Paths, report: Report) -> None:
    """The flat metrics on this run, all of metrics.json on the pipeline's parent run, the files, the bars."""
    tracker.log_metrics(report.flat)
    summary = {k: v for k, v in numeric_leaves(report.metrics).items() if k.replace(".", "_") not in report.flat}
    tracker.log_parent_metrics(report.flat | summary)
    tracker.log_artifact(paths.report)
    for path in (paths.report, paths.metrics):
        tracker.log_parent_artifact(path)
    fig = ppl_bars(report.ppl, "held-out perplexity")
    tracker.log_figure(fig, "perplexity.png")
    close(fig)


@flow(name="report", log_prints=True)
def report(root: str = ".") -> dict:
    stage = Stage.open("report", root)
    result = compute(stage.paths)
    write(stage.paths, result)  # before tracking: a tracking failure cannot lose the report
    with stage.tracking() as tracker:
        log(tracker, stage.paths, result)
    print(result.text)
    return result.metrics


if __name__ == "__main__":
    stage_main(report)
