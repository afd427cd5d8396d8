"""The UIs a team lives in, checked in a real headless Chromium (no network but loopback).

* ``dvc plots show`` / ``dvc plots diff`` with the project's vendored template draw every vega chart offline
  (and DVC's default page, which loads vega from a CDN, draws nothing).
* A run of the served ``pipeline`` deployment, triggered through the Prefect API like the UI's Run button,
  shows up in the Prefect UI (flow run, state, deployment, stage logs, progress artifact, stage flow runs)
  and in the MLflow UI (parent run with its nested stage runs, a stage's metric, its logged DVC metrics file;
  with ``SHAPPRUNE_UI_TARGETS=all`` also the pipeline metrics on the parent and a figure).
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.browser.cdp import Chromium
from tests.browser.conftest import clean_env

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "vendor" / "dvc-plots" / "template.html"
pytestmark = pytest.mark.browser

# vega charts whose canvas has something drawn on it
CHARTS_DRAWN = """Array.from(document.querySelectorAll('.vega-embed canvas')).filter(c => {
  if (!c.width || !c.height) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0 && Math.min(d[i], d[i + 1], d[i + 2]) < 200) return true;
  }
  return false;
}).length"""
MLFLOW_VIEW = "workflowType=machine_learning"  # MLflow 3 opens experiments in its GenAI view otherwise
CLOSE_ASSISTANT = "(b => b ? (b.click(), true) : false)(document.querySelector('button[aria-label=Close]'))"


def _dvc(args: list[str], cwd: Path) -> str:
    env = clean_env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def test_repo_dvc_config_uses_the_vendored_template():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    assert (ROOT / ".dvc" / config["plots"]["html_template"]).resolve() == TEMPLATE
    page = TEMPLATE.read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page and "cdn.jsdelivr" not in page
    assert page.count("<script>") == 3  # vega, vega-lite, vega-embed inlined


def test_dvc_plots_show_and_diff_render_offline(tmp_path, chromium_path, screenshots):
    project = tmp_path / "plots-project"
    (project / "plots").mkdir(parents=True)
    (project / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "plots": [
                    {"loss": {"x": "epoch", "y": {"plots/loss.csv": "loss"}}},
                    {"fit": {"template": "scatter", "x": "measured", "y": {"plots/fit.csv": "predicted"}}},
                ]
            }
        )
    )

    def write(scale: float) -> None:
        rows = "\n".join(f"{e},{scale / (e + 1):.4f}" for e in range(30))
        (project / "plots" / "loss.csv").write_text("epoch,loss\n" + rows + "\n")
        pts = "\n".join(f"{m / 10},{m / 10 * scale + 0.01 * (m % 3)}" for m in range(20))
        (project / "plots" / "fit.csv").write_text("measured,predicted\n" + pts + "\n")

    write(1.0)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        _dvc(cmd, project)
    _dvc(["git", "add", "-A"], project)
    _dvc(["git", "commit", "-qm", "v1"], project)
    write(0.5)
    _dvc(["dvc", "plots", "show", "-o", "cdn"], project)  # DVC's own page: vega from the CDN
    shutil.copy(ROOT / ".dvc" / "config", project / ".dvc" / "config")  # the project's config, template and all
    (project / "vendor" / "dvc-plots").mkdir(parents=True)
    shutil.copy(TEMPLATE, project / "vendor" / "dvc-plots" / "template.html")
    _dvc(["dvc", "plots", "show", "-o", "show"], project)
    _dvc(["dvc", "plots", "diff", "HEAD", "-o", "diff"], project)
    diff_page = (project / "diff" / "index.html").read_text()
    assert '"rev": "HEAD"' in diff_page and '"rev": "workspace"' in diff_page  # both revisions in each chart

    with Chromium(chromium_path, tmp_path / "profile") as browser:
        browser.goto((project / "show" / "index.html").as_uri())
        browser.wait_for(f"{CHARTS_DRAWN} === 2", 30, what="both vega charts drawn")
        assert browser.evaluate("document.querySelectorAll('.vega-embed canvas').length") == 2
        assert browser.evaluate("vega.version") == "5.33.1"
        browser.goto((project / "diff" / "index.html").as_uri())
        browser.wait_for(f"{CHARTS_DRAWN} === 2", 30, what="both vega charts drawn")
        browser.goto((project / "cdn" / "index.html").as_uri())  # control: without the template, offline is blank
        browser.wait_for("document.readyState === 'complete'", 30)
        assert browser.evaluate("typeof vegaEmbed") == "undefined"
        assert browser.evaluate("document.querySelectorAll('.vega-embed canvas').length") == 0

        # the project's own committed plots (the default model's last `dvc repro`), as `make plots` shows them
        _dvc(["dvc", "plots", "show", "-o", str(tmp_path / "project-plots")], ROOT)
        browser.goto((tmp_path / "project-plots" / "index.html").as_uri())
        vega = [p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"] if isinstance(p, dict)]
        assert len(vega) >= 6  # incl. the compare plots drawn by the .dvc/plots templates (faceted, heatmap)
        browser.wait_for(f"{CHARTS_DRAWN} >= {len(vega)}", 60, what="every vega chart of the project drawn")
        browser.wait_for("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)", 30)
        browser.screenshot(screenshots / "dvc_plots.png")


def test_served_pipeline_run_shows_in_prefect_and_mlflow(served_run, chromium_path, screenshots, tmp_path):
    run = served_run
    flow_run, name = run.flow_run, run.flow_run["name"]
    lock_stages = set(yaml.safe_load((run.project / "dvc.lock").read_text())["stages"])
    assert {"prepare_model", "sample_masks"} <= lock_stages

    client = MlflowClient(run.tracking_uri)
    exp = client.get_experiment_by_name("shapprune")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("shapprune.pipeline_id") == f"prefect-{flow_run['id']}"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    parent = parents[0]
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    children = {r.data.tags["dvc_stage"]: r for r in nested}
    assert {"prepare_model", "sample_masks"} <= set(children) <= lock_stages
    masks = children["sample_masks"]
    n_masks = int(masks.data.metrics["n_masks"])
    # the served run's stages are its task runs (state, duration, log), and each stage's MLflow run names
    # the stage's own Prefect flow run
    api = f"{run.prefect_url}/api"
    where = {"flow_runs": {"id": {"any_": [flow_run["id"]]}}}
    tasks = httpx.post(f"{api}/task_runs/filter", json=where, timeout=30).json()
    states = {t["name"].removesuffix(" (unchanged)"): t["state"]["type"] for t in tasks}
    assert {"prepare_model", "sample_masks"} <= set(states) and set(states.values()) == {"COMPLETED"}
    stage_flow_run = httpx.get(f"{api}/flow_runs/{masks.data.tags['prefect.flow_run_id']}", timeout=30).json()
    assert stage_flow_run["name"] == masks.data.tags["prefect.flow_run_name"]

    with Chromium(chromium_path, tmp_path / "profile") as browser:
        # Prefect: the flow run of the served deployment, its state and the stages in its log
        browser.goto(f"{run.prefect_url}/runs/flow-run/{flow_run['id']}")
        browser.wait_for_text(
            name, "Completed", "pipeline", "shapprune-pipeline", "Running stage 'prepare_model'",
            "Running stage 'sample_masks'", timeout=90,
        )  # fmt: skip
        browser.screenshot(screenshots / "prefect_flow_run.png")
        browser.click("[role=tablist] li", "Artifacts")
        browser.wait_for_text("pipeline-progress", "finished: ", "stages visited", timeout=30)
        # every stage is a flow run of its own
        browser.goto(f"{run.prefect_url}/runs")
        browser.wait_for_text(name, "prepare_model", "sample_masks", timeout=60)

        # MLflow: the parent run of this pipeline run, expanded to its nested stage runs
        browser.goto(f"{run.mlflow_url}/#/experiments/{exp.experiment_id}?{MLFLOW_VIEW}")
        browser.wait_for_text(parent.info.run_name, timeout=90)
        browser.evaluate(CLOSE_ASSISTANT)
        expand = (
            "(r => r && r.querySelector('button.du-bois-light-btn-link'))(Array.from(document.querySelectorAll("
            f"'.ag-row')).find(r => r.innerText.includes({json.dumps(parent.info.run_name)})))"
        )
        browser.wait_for(f"(b => b ? (b.click(), true) : false)({expand})", 30, what="the parent run's expander")
        browser.wait_for_text(*children, timeout=30)
        browser.screenshot(screenshots / "mlflow_runs.png")

        # a stage run: its metric and the DVC metrics file it logged
        url = f"{run.mlflow_url}/#/experiments/{exp.experiment_id}/runs/{masks.info.run_id}"
        browser.goto(f"{url}?{MLFLOW_VIEW}")
        text = browser.wait_for_text("sample_masks", "n_masks", "sample_masks.n_masks", timeout=60)
        assert f"n_masks\n{n_masks}" in text
        browser.goto(f"{url}/artifacts/dvc/data/metrics/sample_masks.json?{MLFLOW_VIEW}")
        browser.wait_for_text("sample_masks.json", '"n_masks"', timeout=60)

        if run.targets is None:  # the whole pipeline: scoring progress, parent summary metrics, a stage's figure
            browser.goto(f"{run.prefect_url}/artifacts")
            browser.wait_for_text("pipeline-progress", "score-masks-progress", "shapprune-summary", timeout=60)
            ppl = parent.data.metrics["pruned_ppl_wiki"]
            browser.goto(f"{run.mlflow_url}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}?{MLFLOW_VIEW}")
            browser.wait_for_text("pruned_ppl_wiki", "ppl_ratio.wiki", str(ppl)[:5], timeout=60)
            browser.evaluate(CLOSE_ASSISTANT)
            browser.screenshot(screenshots / "mlflow_parent_run.png")
            shapley = children["estimate_shapley"].info.run_id
            figure = f"{run.mlflow_url}/#/experiments/{exp.experiment_id}/runs/{shapley}/artifacts/contributions.png"
            browser.goto(f"{figure}?{MLFLOW_VIEW}")
            browser.wait_for("Array.from(document.images).some(i => i.complete && i.naturalWidth > 300)", 60)
            browser.evaluate(CLOSE_ASSISTANT)
            browser.screenshot(screenshots / "mlflow_figure.png")
