"""`dvc repro` of the real dvc.yaml on a tiny model: every stage runs, a no-op repro runs nothing,
and a changed prune param reruns only prune, evaluate@pruned and report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALL_STAGES = {
    "prepare_model",
    "prepare_data",
    "sample_masks",
    "score_masks",
    "fit_surrogate",
    "estimate_shapley",
    "prune",
    "evaluate@full",
    "evaluate@pruned",
    "report",
}


def _run(args: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_URI", "PREFECT_API_URL"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def _ran(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


@pytest.mark.slow
def test_dvc_repro_reruns_only_what_changed(tmp_path, workspace):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("flows", "tasks", "shapprune"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", project)
    shutil.copy(workspace / "params.yaml", project)
    _run(["git", "init", "-q"], project)
    _run(["dvc", "init", "-q"], project)
    _run(["dvc", "config", "core.analytics", "false"], project)

    assert _ran(_run(["dvc", "repro"], project)) == ALL_STAGES
    assert (project / "data" / "pruned" / "model.safetensors").is_file()
    assert (project / "dvc.lock").is_file()

    assert _ran(_run(["dvc", "repro"], project)) == set()

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["prune"]["n_drop"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _ran(_run(["dvc", "repro"], project)) == {"prune", "evaluate@pruned", "report"}
    assert yaml.safe_load((project / "metrics.json").read_text())["n_dropped"] == 1
