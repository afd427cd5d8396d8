"""Artifact locations, relative to the project root (the same paths are declared in dvc.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Every artifact the pipeline reads or writes, under one project root."""

    root: Path

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def model(self) -> Path:
        return self.root / "data" / "model"

    @property
    def calibration(self) -> Path:
        return self.root / "data" / "windows" / "calibration.parquet"

    @property
    def validation(self) -> Path:
        return self.root / "data" / "windows" / "validation.parquet"

    def eval_windows(self, corpus: str) -> Path:
        return self.root / "data" / "windows" / "eval" / f"{corpus}.parquet"

    @property
    def windows_dir(self) -> Path:
        return self.root / "data" / "windows"

    @property
    def masks(self) -> Path:
        return self.root / "data" / "masks.parquet"

    @property
    def scores(self) -> Path:
        return self.root / "data" / "scores.parquet"

    @property
    def surrogate(self) -> Path:
        return self.root / "data" / "surrogate"

    @property
    def shapley_csv(self) -> Path:
        return self.root / "data" / "shapley" / "shapley.csv"

    @property
    def shapley_json(self) -> Path:
        return self.root / "data" / "shapley" / "shapley.json"

    @property
    def select_dir(self) -> Path:
        return self.root / "data" / "select"

    @property
    def select_json(self) -> Path:
        return self.select_dir / "select.json"

    @property
    def select_candidates(self) -> Path:
        return self.select_dir / "candidates.parquet"

    @property
    def layer_scores_csv(self) -> Path:
        return self.root / "data" / "layer_scores" / "layer_scores.csv"

    @property
    def layer_scores_json(self) -> Path:
        return self.root / "data" / "layer_scores" / "layer_scores.json"

    @property
    def pruned(self) -> Path:
        return self.root / "data" / "pruned"

    @property
    def repair_windows(self) -> Path:
        return self.root / "data" / "windows" / "repair.parquet"

    @property
    def repaired(self) -> Path:
        return self.root / "data" / "repaired"

    @property
    def export(self) -> Path:
        return self.root / "data" / "export"

    def eval_metrics(self, which: str) -> Path:
        return self.root / "data" / "metrics" / f"eval_{which}.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def report(self) -> Path:
        return self.root / "reports" / "summary.md"

    @property
    def compare_dir(self) -> Path:
        return self.root / "data" / "compare"

    @property
    def compare_report(self) -> Path:
        return self.root / "reports" / "compare.md"

    def metrics_file(self, stage: str) -> Path:
        return self.root / "data" / "metrics" / f"{stage}.json"
