"""The `pipeline` flow's pieces: the dvc command it runs and how it reads stage progress off dvc's output."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from flows import pipeline as pipeline_module
from flows.pipeline import count_stages, dvc_command
from tasks.pipeline import stage_event

ROOT = Path(__file__).resolve().parents[2]


def test_dvc_command():
    assert dvc_command(None, False) == ["dvc", "repro"]
    assert dvc_command(None, True, ["report"]) == ["dvc", "repro", "report", "--force"]
    exp = ["dvc", "exp", "run", "-S", "prune.ratio=0.3", "prune"]
    assert dvc_command({"prune.ratio": "0.3"}, False, ["prune"]) == exp


def test_stage_events_from_dvc_output():
    assert stage_event("Running stage 'evaluate@full':") == "evaluate@full"
    assert stage_event("Stage 'prepare_model' didn't change, skipping") == "prepare_model"
    assert stage_event("Updating lock file 'dvc.lock'") is None
    assert stage_event("  Running stage 'x': (indented, not dvc's)") is None


def test_count_stages_expands_foreach(tmp_path):
    spec = {"stages": {"a": {"cmd": "a"}, "b": {"foreach": ["x", "y", "z"], "do": {"cmd": "b ${item}"}}}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec))
    assert count_stages(tmp_path / "dvc.yaml") == 4
    assert count_stages(tmp_path / "missing.yaml") == 0
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert count_stages(ROOT / "dvc.yaml") == len(stages) + len(stages["evaluate"]["foreach"]) - 1


FAKE_DVC = """
    import sys
    print("Stage 'prepare_model' didn't change, skipping")
    print("Running stage 'prepare_data':")
    print("> python -m flows.prepare_data")
    print("saved 12 windows")
    print("Running stage 'sample_masks':")
    print("error: sample_masks: something is wrong")
    sys.exit(2)
"""


def test_each_dvc_stage_is_a_task_run_with_its_state_and_output(prefect_api, tmp_path, monkeypatch):
    """The served pipeline's flow run shows its stages as task runs: unchanged, ran, failed (with the log)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    script = tmp_path / "fake_dvc.py"
    script.write_text(textwrap.dedent(FAKE_DVC))
    monkeypatch.setattr(pipeline_module, "dvc_command", lambda *a, **k: [sys.executable, str(script)])
    state = pipeline_module.pipeline(root=str(tmp_path), return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="exit 2"):
        state.result()

    async def task_runs_and_logs():
        async with get_client() as client:
            flow_id = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            runs = await client.read_task_runs(flow_run_filter=flow_id)
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_id.id.any_[0]])))
            return runs, logs

    import asyncio

    APILogHandler().flush()
    runs, logs = asyncio.run(task_runs_and_logs())
    runs = {r.name: r for r in runs}
    assert set(runs) == {"prepare_model (unchanged)", "prepare_data", "sample_masks"}
    assert runs["prepare_model (unchanged)"].state.is_completed() and runs["prepare_data"].state.is_completed()
    assert runs["sample_masks"].state.is_failed()
    by_task = {r.id: name for name, r in runs.items()}
    lines = {(by_task.get(log.task_run_id), log.message) for log in logs}
    assert ("prepare_data", "saved 12 windows") in lines  # each stage's output lines in its own task run's log
    assert ("sample_masks", "error: sample_masks: something is wrong") in lines
    assert ("sample_masks", "saved 12 windows") not in lines
