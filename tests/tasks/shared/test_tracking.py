"""Tracking helpers: metrics.json on the parent run, the pruned model with its size, each stage's DVC outputs,
the experiment's kind, and Prefect progress bars that never fail the work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import tasks.shared.progress
from tasks.shared.mlflow_runs import EXPERIMENT, mlflow_stage
from tasks.shared.progress import PrefectProgress
from tasks.shared.runtime import log_stage_outputs, stage_outputs
from tasks.shared.tracking import NullTracker, log_model_dir, numeric_leaves


def test_numeric_leaves_keeps_numbers_only():
    metrics = {"n": 2, "full": {"ppl": {"wiki": 21.5}}, "ok": True, "layers": [1, 2], "none": None, "s": "x"}
    assert numeric_leaves(metrics) == {"n": 2.0, "full.ppl.wiki": 21.5}


@pytest.fixture
def model_dir(tmp_path) -> Path:
    out = tmp_path / "pruned"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"\0" * 2**20)
    (out / "config.json").write_text("{}")
    (out / "pruning.json").write_text('{"dropped_layers": [1]}')
    return out


def test_small_model_is_logged_whole_with_its_size(model_dir):
    tracker = NullTracker()
    size, whole = log_model_dir(tracker, model_dir, max_mb=10)
    assert whole and tracker.artifacts == [str(model_dir)]
    assert tracker.metrics["model_size_mb"] == pytest.approx(size) and 1.0 < size < 1.01


def test_large_model_is_logged_by_reference(model_dir, monkeypatch):
    tracker = NullTracker()
    monkeypatch.setenv("SHAPPRUNE_MLFLOW_MODEL_MAX_MB", "0.5")
    size, whole = log_model_dir(tracker, model_dir)
    names = [Path(a).name for a in tracker.artifacts]
    assert not whole and "model.safetensors" not in names
    assert {"config.json", "pruning.json", "weights.json"} <= set(names)


class _NoteTracker(NullTracker):
    """Keeps what ``weights.json`` said (the file itself is a temporary one)."""

    def log_artifact(self, path, artifact_path=None) -> None:
        super().log_artifact(path, artifact_path)
        if Path(path).name == "weights.json":
            self.note = json.loads(Path(path).read_text())


def test_the_note_names_the_limit_the_model_was_over(model_dir, monkeypatch):
    """One limit for prune's and repair's models (STAGE_MODEL_MAX_MB, overridden by its env var); a stage that
    passes its own (export: export.mlflow_max_mb) is named as that, never as the env var it did not read."""
    import tasks.shared.tracking as tracking

    monkeypatch.delenv(tracking.STAGE_MODEL_MAX_MB_ENV, raising=False)
    monkeypatch.setattr(tracking, "STAGE_MODEL_MAX_MB", 0.5)
    tracker = _NoteTracker()
    assert log_model_dir(tracker, model_dir)[1] is False  # 1 MiB over the constant
    assert tracker.note["weights_not_logged"] == "1.0 MiB > 0.5 MiB (SHAPPRUNE_MLFLOW_MODEL_MAX_MB)"
    monkeypatch.setenv(tracking.STAGE_MODEL_MAX_MB_ENV, "2")
    assert log_model_dir(NullTracker(), model_dir)[1] is True  # the env var overrides the constant
    tracker = _NoteTracker()
    assert log_model_dir(tracker, model_dir, "model", max_mb=0.25, limit_name="export.mlflow_max_mb")[1] is False
    assert tracker.note["weights_not_logged"] == "1.0 MiB > 0.25 MiB (export.mlflow_max_mb)"
    tracker = _NoteTracker()
    log_model_dir(tracker, model_dir, "model", max_mb=0.25)
    assert tracker.note["weights_not_logged"] == "1.0 MiB > 0.25 MiB"


DVC_YAML = {
    "stages": {
        "fit": {
            "cmd": "x",
            "metrics": [{"data/metrics/fit.json": {"cache": False}}],
            "plots": [{"plots/fit/pred.csv": {"cache": False}}, "plots/fit/fit.png"],
        },
        "evaluate": {
            "foreach": {"full": {}, "pruned": {}},
            "do": {"cmd": "y", "metrics": [{"data/metrics/eval_${key}.json": {"cache": False}}]},
        },
    }
}


def test_stage_outputs_come_from_dvc_yaml(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    assert stage_outputs(tmp_path, "fit") == [
        tmp_path / "data/metrics/fit.json",
        tmp_path / "plots/fit/pred.csv",
        tmp_path / "plots/fit/fit.png",
    ]
    assert stage_outputs(tmp_path, "evaluate@pruned") == [tmp_path / "data/metrics/eval_pruned.json"]
    assert stage_outputs(tmp_path, "nope") == []


def test_log_stage_outputs_skips_images_and_missing_files(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    for rel in ("data/metrics/fit.json", "plots/fit/fit.png"):  # plots/fit/pred.csv is missing
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    tracker = NullTracker()
    assert log_stage_outputs(tracker, tmp_path, "fit") == [tmp_path / "data/metrics/fit.json"]


def test_mlflow_stage_logs_parent_summary_artifacts_and_experiment_kind(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SHAPPRUNE_PIPELINE_ID", "test-tracking")
    (tmp_path / "metrics.json").write_text(json.dumps({"pruned": {"ppl": {"wiki": 30.0}}}))
    with mlflow_stage(tmp_path, "report", {"base": {"model": "m"}, "prune": {"ratio": 0.2}}) as tracker:
        tracker.log_parent_metrics(numeric_leaves(json.loads((tmp_path / "metrics.json").read_text())))
        tracker.log_parent_artifact(tmp_path / "metrics.json")
        tracker.log_artifact(tmp_path / "metrics.json", "dvc")

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert parent.data.metrics == {"pruned.ppl.wiki": 30.0}
    assert parent.data.params["prune.ratio"] == "0.2"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["metrics.json"]
    assert [a.path for a in client.list_artifacts(child.info.run_id, "dvc")] == ["dvc/metrics.json"]
    assert child.info.status == parent.info.status == "FINISHED"


def test_progress_bar_never_fails_the_work(monkeypatch):
    def down(*args, **kwargs):
        raise RuntimeError("no API")

    monkeypatch.setattr(tasks.shared.progress, "create_progress_artifact", down)
    bar = PrefectProgress("k", "d")
    bar.update(50)  # nothing to update, nothing raised
    assert bar.id is None and bar.percent == 50

    calls = []
    monkeypatch.setattr(tasks.shared.progress, "create_progress_artifact", lambda p, key, description: "id-1")
    monkeypatch.setattr(
        tasks.shared.progress, "update_progress_artifact", lambda *a, **k: calls.append((a, k)) or down()
    )
    bar = PrefectProgress("k", "d", percent=10)
    bar.update(150, "done")
    assert bar.id == "id-1" and bar.percent == 100
    assert calls == [(("id-1", 100.0), {"description": "done"})]


def test_dvc_experiment_copies_track_into_the_repository(tmp_path, monkeypatch):
    from tasks.shared.mlflow_runs import project_root, tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    temp = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12cd"  # where `dvc exp run --temp` runs
    temp.mkdir(parents=True)
    assert project_root(temp) == tmp_path / "repo"
    assert tracking_uri(temp) == f"sqlite:///{tmp_path / 'repo' / 'mlflow.db'}"
    assert project_root(tmp_path / "repo") == tmp_path / "repo"
