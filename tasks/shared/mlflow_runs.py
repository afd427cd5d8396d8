"""MLflow runs: one parent run per pipeline run and a nested run per stage, tied to the stage's Prefect flow run.

Stages started by one ``dvc repro`` share the parent: it is found by a pipeline id, taken from
``SHAPPRUNE_PIPELINE_ID`` or else from the ``dvc`` process that launched the stage.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tasks.shared.tracking import flatten

EXPERIMENT = "shapprune"
# MLflow 3 opens an experiment in the view its kind names; this one is model training, not GenAI.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def git_commit(root: Path) -> str:
    """Current git commit of ``root`` (``unknown`` outside a repository)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return (out.returncode == 0 and out.stdout.strip()) or "unknown"  # a repo with no commit prints "HEAD"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _proc_parent_and_start(pid: int) -> tuple[int, str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]), fields[19]


def pipeline_id() -> str:
    """Id shared by the stages of one pipeline run (env var, else the launching ``dvc`` process)."""
    if os.environ.get("SHAPPRUNE_PIPELINE_ID"):
        return os.environ["SHAPPRUNE_PIPELINE_ID"]
    pid = os.getpid()
    try:
        for _ in range(12):
            parent, _start = _proc_parent_and_start(pid)
            if parent <= 1:
                break
            cmd = _proc_cmdline(parent)
            if "dvc" in cmd.split(" ")[0] or " dvc " in f" {cmd} " or "/dvc " in cmd:
                return f"dvc-{parent}-{_proc_parent_and_start(parent)[1]}"
            pid = parent
    except (OSError, ValueError, IndexError):
        pass
    return f"solo-{uuid.uuid4().hex[:12]}"


class MlflowTracker:
    """Logs into an MLflow nested run under the pipeline's parent run."""

    def __init__(self, client: Any, run_id: str, parent_id: str) -> None:
        self.client, self.run_id, self.parent_id = client, run_id, parent_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_parent_metrics(self, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            if v is not None:
                self.client.log_metric(self.parent_id, k, float(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._log_artifact(self.run_id, path, artifact_path)

    def log_parent_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._log_artifact(self.parent_id, path, artifact_path)

    def _log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None) -> None:
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(run_id, str(p), artifact_path)
        elif p.exists():
            self.client.log_artifact(run_id, str(p), artifact_path)

    def log_figure(self, figure: Any, name: str) -> None:
        self.client.log_figure(self.run_id, figure, name)

    def log_child_run(self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """A finished run nested under this stage's run (one cell of a sweep: its params and metrics)."""
        from mlflow.entities import Metric, Param

        run = self.client.get_run(self.run_id)
        inherited = {k: v for k, v in run.data.tags.items() if k in ("dvc_stage", "git_commit", "model")}
        child = self.client.create_run(
            run.info.experiment_id, run_name=name, tags=inherited | {"mlflow.parentRunId": self.run_id}
        )
        now = int(time.time() * 1000)
        self.client.log_batch(
            child.info.run_id,
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        )
        self.client.set_terminated(child.info.run_id, "FINISHED")

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))


def project_root(root: Path) -> Path:
    """The repository a run belongs to: DVC runs queued and ``--temp`` experiments in a copy under
    ``<repo>/.dvc/tmp/exps/``, and their runs belong in the repository's store, next to the others."""
    parts = root.resolve().parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root.resolve()


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` or a sqlite database at the project root (absolute path)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root(root) / 'mlflow.db'}"


def _experiment_id(client: Any, root: Path) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        for key, value in EXPERIMENT_KIND.items():  # stores made before the kind was set
            if exp.tags.get(key) != value:
                client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    artifacts = (project_root(root) / "mlartifacts").as_uri()
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=artifacts, tags=EXPERIMENT_KIND)
    except Exception:  # another process created it first
        return client.get_experiment_by_name(EXPERIMENT).experiment_id


def _parent_run(client: Any, experiment_id: str, pid: str, root: Path, params: Mapping[str, Any]) -> str:
    found = client.search_runs([experiment_id], filter_string=f"tags.`shapprune.pipeline_id` = '{pid}'", max_results=1)
    if found:
        return found[0].info.run_id
    base = params.get("base", {})
    name = f"pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}"
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={"shapprune.pipeline_id": pid, "git_commit": git_commit(root), "model": str(base.get("model", ""))},
    )
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
    for start in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[start : start + 100])
    return run.info.run_id


@contextmanager
def mlflow_stage(root: Path, stage: str, params: Mapping[str, Any]) -> Iterator[MlflowTracker]:
    """A nested MLflow run for ``stage`` under this pipeline's parent run; FAILED if the stage raises."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(root))
    exp = _experiment_id(client, root)
    parent = _parent_run(client, exp, pipeline_id(), root, params)
    run = client.create_run(
        exp,
        run_name=stage,
        tags={
            "mlflow.parentRunId": parent,
            "dvc_stage": stage,
            "git_commit": git_commit(root),
            "mlflow.source.name": f"flows/{stage.split('@')[0]}.py",
        },
    )
    tracker = MlflowTracker(client, run.info.run_id, parent)
    link_prefect(tracker)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    finally:
        client.set_terminated(run.info.run_id, status=status)
        client.set_terminated(parent, status=status)


def link_prefect(tracker: MlflowTracker) -> str | None:
    """Make the stage's Prefect flow run and its MLflow run name each other; returns the MLflow run's URL.

    The MLflow run gets ``prefect.flow_run_id`` (and ``prefect.flow_run_url`` where Prefect knows its UI);
    the flow run gets a link artifact ``mlflow-run`` to the MLflow UI (``MLFLOW_UI_URL``, default
    http://127.0.0.1:5000, what ``make mlflow-ui`` serves). Outside a flow run it does nothing.
    """
    try:
        from prefect import runtime
        from prefect.artifacts import create_link_artifact

        flow_run_id = runtime.flow_run.id
        if not flow_run_id:
            return None
        tags = {"prefect.flow_run_id": str(flow_run_id), "prefect.flow_run_name": str(runtime.flow_run.name)}
        if runtime.flow_run.ui_url:
            tags["prefect.flow_run_url"] = str(runtime.flow_run.ui_url)
        tracker.set_tags(tags)
        experiment = tracker.client.get_run(tracker.run_id).info.experiment_id
        base = os.environ.get("MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")
        url = f"{base}/#/experiments/{experiment}/runs/{tracker.run_id}"
        create_link_artifact(url, link_text=f"MLflow run {tracker.run_id[:8]}", key="mlflow-run")
        return url
    except Exception:  # linking is a convenience: it never fails a stage
        return None
