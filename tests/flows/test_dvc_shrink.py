"""Every documented way to shrink a stage runs `dvc repro` to the end and ships the model.

The ways the README and docs/results.md name: a smaller comparison (one method, `compare.repairs: [none]`),
no repair (`repair.method: none`) and no zero-shot tasks (`evaluate.tasks: []`), all at once on the tiny
pipeline's DVC project (as in `test_dvc_pipeline.py`, which also skips the comparison, `compare.methods: []`,
and reruns `repair.method: none` alone): the run must reach `export` and leave nothing stale (`dvc status`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.flows.stage_process import child_env

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, api_url: str) -> str:
    env = child_env(api_url, "MLFLOW_TRACKING_URI")
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def _repro(project: Path, api_url: str, **sections: dict) -> set[str]:
    """Set ``sections`` in params.yaml, `dvc repro`, check that nothing is left stale; the stages that ran."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = set(re.findall(r"Running stage '([^']+)'", _run(["dvc", "repro"], project, api_url)))
    assert "up to date" in _run(["dvc", "status"], project, api_url)
    assert (project / "data" / "export" / "model" / "config.json").is_file()
    return ran


def test_every_documented_shrink_reaches_the_shipped_model(tmp_path, tiny_pipeline, prefect_api):
    project = tiny_pipeline.copy(tmp_path / "project")
    for name in ("flows", "tasks", "shapprune"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", project)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        _run(cmd, project, prefect_api)
    _run(["dvc", "commit", "--force", "-q"], project, prefect_api)

    ran = _repro(
        project,
        prefect_api,
        compare={"methods": ["block_influence"], "repairs": ["none"]},
        repair={"method": "none"},
        evaluate={"tasks": []},
    )
    assert {"repair", "evaluate@full", "compare", "report", "export"} <= ran, ran
    compared = json.loads((project / "data" / "compare" / "compare.json").read_text())
    assert {(r["method"], r["repair"]) for r in compared["rows"]} == {("full", "none"), ("block_influence", "none")}
    assert json.loads((project / "data" / "metrics" / "eval_repaired.json").read_text())["zero_shot"] == {}
    assert json.loads((project / "data" / "metrics" / "repair.json").read_text())["method"] == "none"
