"""Prefect and MLflow, tied together: a stage's flow run and its MLflow run name each other."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.shared.tracking import MlflowTracker


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
