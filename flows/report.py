"""Stage ``report``: metrics.json for ``dvc metrics``, plot data for ``dvc plots`` and a markdown summary."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from prefect import flow

from tasks.report import (
    compare_section,
    flat_metrics,
    headline_metrics,
    plot_frames,
    report_section,
    summary_markdown,
    weights_line,
)
from tasks.report_quality import domain_section
from tasks.shared.contracts import (
    CompareSummary,
    EvalSummary,
    LayerTable,
    ModelSize,
    PruningRecord,
    RepairSummary,
    ScoringSummary,
    SelectionTable,
    SurrogateFidelity,
    write_json,
)
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.plots import ppl_bars
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker, numeric_leaves


@dataclass(frozen=True)
class Records:
    """Every stage's record the report is made of (typed readers; the optional ones None when absent)."""

    full: EvalSummary
    pruned: EvalSummary
    pruning: PruningRecord
    surrogate: SurrogateFidelity
    scoring: ScoringSummary
    model: ModelSize
    repaired: EvalSummary | None
    repair: RepairSummary | None
    selection: SelectionTable | None
    baseline: LayerTable | None
    compared: CompareSummary
    compare_md: str  # reports/compare.md ("" when nothing was compared)


@dataclass(frozen=True)
class Summary:
    """The summary's markdown, metrics.json, its flat MLflow view and the plot data."""

    text: str
    metrics: dict  # metrics.json (nested)
    flat: dict[str, float]  # the stage run's MLflow metrics
    frames: dict[str, pd.DataFrame]  # plots/report/<name>.csv
    ppl: dict[str, dict[str, float]]  # model -> corpus -> PPL, for the bar chart


class Report:
    """Read every stage's record, build the summary from them, write it and log it."""

    name = "report"

    def read(self, stage: Stage) -> Records:
        paths = stage.paths
        repaired_file = paths.eval_metrics("repaired")
        repaired = EvalSummary.read(repaired_file) if repaired_file.is_file() else None
        compared = CompareSummary.read(paths.compare_dir / "compare.json")
        return Records(
            full=EvalSummary.read(paths.eval_metrics("full")),
            pruned=EvalSummary.read(paths.eval_metrics("pruned")),
            pruning=PruningRecord.read(paths.pruned),
            surrogate=SurrogateFidelity.read(paths.metrics_file("fit_surrogate")),
            scoring=ScoringSummary.read(paths.metrics_file("score_masks")),
            model=ModelSize.read(paths.metrics_file("prepare_model")),
            repaired=repaired,
            repair=RepairSummary.read(paths.metrics_file("repair")) if repaired is not None else None,
            selection=SelectionTable.read(paths.select_json) if paths.select_json.is_file() else None,
            baseline=LayerTable.read(paths.layer_scores_json) if paths.layer_scores_json.is_file() else None,
            compared=compared,
            compare_md=paths.compare_report.read_text() if compared.n_rows else "",
        )

    def compute(self, stage: Stage, r: Records) -> Summary:
        # empty unless prune.method is select
        select_text, select_metrics = report_section(r.selection, r.baseline) if r.selection else ("", {})
        if r.compared.n_rows:
            select_text += compare_section(r.compare_md)
        metrics = headline_metrics(r.full, r.pruned, r.pruning, r.surrogate, r.scoring, r.repaired)
        if select_metrics:
            metrics["select"] = select_metrics
        weights = weights_line(r.model, r.scoring.dtype, r.full.dtype)
        data = stage.params.prepare_data
        labels = data.domain_labels()
        domains, ood = domain_section(labels, dict(data.eval_corpora), r.full, r.pruned, r.repaired)
        metrics["out_of_domain"] = ood
        text = summary_markdown(
            r.full, r.pruned, r.pruning, r.surrogate, r.scoring, r.repaired, r.repair, weights, domains
        )
        text += f"\n{select_text}" if select_text else ""
        flat = flat_metrics(metrics, r.full, r.pruned, r.repaired) | select_metrics
        flat |= {f"ood_{k}": v for k, v in ood.items() if k.endswith("_ppl_ratio") and v is not None}
        ppl = {"full": r.full.ppl, "pruned": r.pruned.ppl} | ({"repaired": r.repaired.ppl} if r.repaired else {})
        return Summary(text, metrics, flat, plot_frames(r.full, r.pruned, r.repaired), ppl)

    def write(self, stage: Stage, report: Summary) -> Figures:
        """metrics.json, plots/report/*.csv and reports/summary.md (the bars are drawn for MLflow only)."""
        paths = stage.paths
        write_json(paths.metrics, report.metrics)
        for name, frame in report.frames.items():
            (paths.plots / "report").mkdir(parents=True, exist_ok=True)
            frame.to_csv(paths.plots / "report" / f"{name}.csv", index=False)
        paths.report.parent.mkdir(parents=True, exist_ok=True)
        paths.report.write_text(report.text)
        return {"perplexity.png": ppl_bars(report.ppl, "held-out perplexity")}

    def log(self, tracker: Tracker, stage: Stage, report: Summary) -> None:
        """The flat metrics on this run, all of metrics.json on the pipeline's parent run, and the files."""
        paths = stage.paths
        tracker.log_metrics(report.flat)
        rest = {k: v for k, v in numeric_leaves(report.metrics).items() if k.replace(".", "_") not in report.flat}
        tracker.log_parent_metrics(report.flat | rest)
        tracker.log_artifact(paths.report)
        for path in (paths.report, paths.metrics):
            tracker.log_parent_artifact(path)

    def summary(self, report: Summary) -> str:
        return report.text

    def returns(self, report: Summary) -> dict:
        return report.metrics


@flow(name="report", log_prints=True)
def report(root: str = ".") -> dict:
    return run_stage(Report(), root)


if __name__ == "__main__":
    stage_main(report)
