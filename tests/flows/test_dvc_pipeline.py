"""`dvc repro` of the real dvc.yaml on a tiny model. The shared tiny run (every stage, run in process once per
session) is recorded by `dvc commit`: every declared dependency and output exists, and `dvc repro` then runs
nothing; a changed prune param names the stages that read it (`--dry`), and a changed repair param reruns,
through the Prefect `pipeline` flow and dvc's own stage commands, only the stages that depend on it. Every
documented way to skip or shrink a stage then runs to the shipped model with nothing left stale: no repair
(`repair.method: none`), no comparison (`compare.methods: []`), and a one-method comparison as pruned with no
zero-shot tasks (`evaluate.tasks: []`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.flows.stage_process import child_env

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
    env = child_env(api_url, "MLFLOW_TRACKING_URI")  # the project's own MLflow store (params.yaml)
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def _ran(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


@pytest.mark.long
def test_dvc_repro_reruns_only_what_changed(tmp_path, tiny_pipeline, prefect_api):
    api_url = prefect_api
    project = tiny_pipeline.copy(tmp_path / "project")  # params.yaml and every artifact, not its MLflow store
    for name in ("flows", "tasks", "shapprune"):  # the project's code, as a fresh checkout would have it
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", project)
    _run(["git", "init", "-q"], project)
    _run(["dvc", "init", "-q"], project)
    _run(["dvc", "config", "core.analytics", "false"], project)

    # dvc commit fails on any declared dependency or output that the stages did not make
    _run(["dvc", "commit", "--force", "-q"], project)
    assert set(yaml.safe_load((project / "dvc.lock").read_text())["stages"]) == ALL_STAGES
    assert _ran(_run(["dvc", "repro"], project, api_url)) == set()

    params = yaml.safe_load((project / "params.yaml").read_text())
    n_drop = params["prune"]["n_drop"]
    params["prune"]["n_drop"] = n_drop - 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # a dry run names the stages that read prune's k: score_masks' rounds stop when the choice at k is
    # resolved, estimate_shapley checks prune's boundary, select searches it (select.n_drops: null); the rest
    # of the DAG reruns where their outputs change (a dry run cannot know)
    reads_k = {"score_masks", "estimate_shapley", "select", "prune"}
    assert _ran(_run(["dvc", "repro", "--dry"], project, api_url)) == reads_k
    params["prune"]["n_drop"] = n_drop
    assert params["repair"]["method"] != "none"
    params["repair"]["method"] = "none"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the repair and what reads it rerun, through the Prefect `pipeline` flow (which runs `dvc repro`); the
    # full model's evaluation, the cut and every upstream stage stay cached
    rerun = {"repair", "evaluate@repaired", "report", "export"}
    assert _ran(_run([sys.executable, "-m", "flows.pipeline"], project, api_url)) == rerun
    assert yaml.safe_load((project / "data" / "metrics" / "repair.json").read_text())["method"] == "none"
    assert _ran(_run(["dvc", "repro"], project, api_url)) == set()

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("shapprune").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["shapprune.pipeline_id"].startswith("prefect-")
    assert sorted(r.data.tags["mlflow.runName"] for r in runs if r not in parents) == sorted(rerun)

    # the documented way to skip the comparison (compare.methods: []) runs to the end and ships the model
    params["compare"]["methods"] = []
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    skipped = _ran(_run(["dvc", "repro"], project, api_url))
    assert {"compare", "report"} <= skipped, skipped  # export reads neither: its model stays shipped
    assert "Nothing compared" in (project / "reports" / "compare.md").read_text()
    assert (project / "data" / "export" / "model" / "config.json").is_file()
    assert _ran(_run(["dvc", "repro"], project, api_url)) == set()

    # a one-method comparison as pruned and no zero-shot tasks: the evaluations and what reads them rerun
    params["compare"] |= {"methods": ["block_influence"], "repairs": ["none"]}
    params["evaluate"]["tasks"] = []
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shrunk = _ran(_run(["dvc", "repro"], project, api_url))
    assert {"evaluate@full", "evaluate@repaired", "compare", "report", "export"} <= shrunk, shrunk
    assert "up to date" in _run(["dvc", "status"], project, api_url)
    compared = json.loads((project / "data" / "compare" / "compare.json").read_text())
    assert {(r["method"], r["repair"]) for r in compared["rows"]} == {("full", "none"), ("block_influence", "none")}
    assert json.loads((project / "data" / "metrics" / "eval_repaired.json").read_text())["zero_shot"] == {}
    assert (project / "data" / "export" / "model" / "config.json").is_file()
