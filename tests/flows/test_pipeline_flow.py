"""The `pipeline` flow's pieces: the dvc command it runs and how it reads stage progress off dvc's output."""

from __future__ import annotations

from pathlib import Path

import yaml

from flows.pipeline import count_stages, dvc_command, stage_event

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
