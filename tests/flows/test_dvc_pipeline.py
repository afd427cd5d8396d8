"""`dvc repro` of the real dvc.yaml on a tiny model: every stage runs, a no-op repro runs nothing,
and a changed prune param reruns only the stages that depend on it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
ALL_STAGES = {
    "prepare_model",
    "prepare_data",
    "sample_masks",
    "score_masks",
    "fit_surrogate",
    "estimate_shapley",
    "select",
    "score_layers",
    "prune",
    "repair",
    "evaluate@full",
    "evaluate@pruned",
    "evaluate@repaired",
    "compare",
    "report",
    "export",
}


def _run(args: list[str], cwd: Path, api_url: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_URI", "PREFECT_API_URL"))}
    if api_url:  # one shared Prefect API instead of a temporary server per stage process
        env["PREFECT_API_URL"] = api_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def _ran(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


@pytest.mark.slow
@pytest.mark.long
def test_dvc_repro_reruns_only_what_changed(tmp_path, workspace, prefect_api):
    api_url = prefect_api
    project = tmp_path / "project"
    project.mkdir()
    for name in ("flows", "tasks", "shapprune"):  # the project's code, as a fresh checkout would have it
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", project)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["compare"]["methods"] = ["select", "sleb"]  # two methods show the stage; each costs a stage-second
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], project)
    _run(["dvc", "init", "-q"], project)
    _run(["dvc", "config", "core.analytics", "false"], project)

    # the first run goes through the Prefect `pipeline` flow, which runs `dvc repro`
    assert _ran(_run([sys.executable, "-m", "flows.pipeline"], project, api_url)) == ALL_STAGES
    assert (project / "data" / "pruned" / "model.safetensors").is_file()
    assert (project / "dvc.lock").is_file()
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("shapprune").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["shapprune.pipeline_id"].startswith("prefect-")
    cfg = yaml.safe_load((project / "params.yaml").read_text())["compare"]
    compared = 1 + len(cfg["methods"]) * len(cfg["repairs"])  # the full model, one k as pruned and repaired
    assert len(runs) == 1 + len(ALL_STAGES) + compared  # the parent, a run per stage, a run per compared cell

    assert _ran(_run(["dvc", "repro"], project, api_url)) == set()

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["prune"]["n_drop"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # a dry run names the stages that read prune's k: estimate_shapley checks prune's boundary, select searches
    # it (select.n_drops: null); the rest of the DAG reruns where their outputs change (a dry run cannot know)
    assert _ran(_run(["dvc", "repro", "--dry"], project, api_url)) == {"estimate_shapley", "select", "prune"}
    params["prune"]["n_drop"] = 2
    params["repair"]["method"] = "none"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the repair and what reads it rerun; the full model's evaluation, the cut and every upstream stage stay cached
    assert _ran(_run(["dvc", "repro"], project, api_url)) == {"repair", "evaluate@repaired", "report", "export"}
    assert yaml.safe_load((project / "data" / "metrics" / "repair.json").read_text())["method"] == "none"
