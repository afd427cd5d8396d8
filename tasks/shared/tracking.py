"""Experiment tracking behind a small interface: what stages log, a null tracker for tests, and the helpers
that turn records and model folders into what a tracker takes. The MLflow implementation: ``mlflow_runs.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

# The limit on the working models a stage logs (prune's and repair's, through log_model_dir): larger ones are
# logged by reference, their weights staying in DVC's cache. The shipped model is another thing with its own
# limit: export.mlflow_max_mb (a DVC-tracked param, 1024 MiB) also decides whether it is registered in MLflow's
# model registry, and export passes it as ``max_mb``.
STAGE_MODEL_MAX_MB = 200.0
STAGE_MODEL_MAX_MB_ENV = "SHAPPRUNE_MLFLOW_MODEL_MAX_MB"  # overrides STAGE_MODEL_MAX_MB (MiB)


class Tracker(Protocol):
    """What stages log: params, metrics, files, figures and tags."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_figure(self, figure: Any, name: str) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def log_parent_metrics(self, metrics: Mapping[str, float]) -> None: ...
    def log_parent_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_child_run(self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None: ...


class NullTracker:
    """Records calls in memory; logs nothing anywhere (tests, dry runs)."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: dict[str, float] = {}
        self.artifacts: list[str] = []
        self.tags: dict[str, str] = {}
        self.children: dict[str, tuple[dict[str, Any], dict[str, float]]] = {}

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metrics.update(metrics)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(str(path))

    def log_figure(self, figure: Any, name: str) -> None:
        self.artifacts.append(name)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)

    def log_parent_metrics(self, metrics: Mapping[str, float]) -> None:
        self.metrics.update({f"parent/{k}": v for k, v in metrics.items()})

    def log_parent_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(f"parent/{path}")

    def log_child_run(self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        self.children[name] = (dict(params), dict(metrics))


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (lists become strings)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def numeric_leaves(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested dict as flat MLflow metric names (``{"a": {"b": 1}} -> {"a.b": 1.0}``).

    Booleans, strings, lists and ``None`` are left out: they are not metrics.
    """
    return {
        k: float(v) for k, v in flatten(d, prefix).items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def directory_mb(path: Path) -> float:
    """Size of every file under ``path`` in MiB."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def log_model_dir(
    tracker: Tracker,
    model_dir: Path,
    artifact_path: str = "pruned_model",
    max_mb: float | None = None,
    limit_name: str | None = None,
) -> tuple[float, bool]:
    """Log a saved transformers model directory and its size.

    The whole directory when it is at most ``max_mb`` MiB (default: ``SHAPPRUNE_MLFLOW_MODEL_MAX_MB``, else
    :data:`STAGE_MODEL_MAX_MB`); otherwise everything but the weights, plus ``weights.json`` naming the weight
    files, their sizes, where they live (the DVC-tracked output) and the limit they were over (``limit_name``
    for a ``max_mb`` given), so a sweep of runs does not copy a model per run.
    Returns ``(size in MiB, whether the weights were logged)``.
    """
    model_dir = Path(model_dir)
    if max_mb is None:
        max_mb, limit_name = float(os.environ.get(STAGE_MODEL_MAX_MB_ENV, STAGE_MODEL_MAX_MB)), STAGE_MODEL_MAX_MB_ENV
    size = directory_mb(model_dir)
    with_weights = size <= max_mb
    tracker.log_metrics({"model_size_mb": size})
    if with_weights:
        tracker.log_artifact(model_dir, artifact_path)
        return size, True
    weights = {}
    for f in sorted(model_dir.iterdir()):
        if f.suffix in {".safetensors", ".bin", ".pt", ".gguf"}:
            weights[f.name] = f.stat().st_size
        elif f.is_file():
            tracker.log_artifact(f, artifact_path)
    note = {
        "weights_not_logged": f"{size:.1f} MiB > {max_mb:g} MiB" + (f" ({limit_name})" if limit_name else ""),
        "location": str(model_dir.resolve()),
        "files_bytes": weights,
        "restore": "dvc checkout (the weights are a DVC output recorded in dvc.lock)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.json"
        path.write_text(json.dumps(note, indent=2) + "\n")
        tracker.log_artifact(path, artifact_path)
    return size, False
