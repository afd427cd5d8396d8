"""What `make repro` costs, stage by stage, and the decision against SLEB's, side by side on one machine.

Run after `make repro` in a project (a fresh clone, as a new user runs it). Each stage's seconds are its
MLflow run's (start to end, the newest run of each stage); the decision's LLM evaluations are score_masks'
masks (design masks and the rounds' proposals) plus select's verifications, also as layer-token forwards.
With ``--sleb`` the same project then chooses prune's k by SLEB (``score_layers`` with ``prune.method:
sleb``, in a copy holding data/model and the windows), timed on the same machine right after: the ratio
of the default decision's seconds (sample_masks to select) to SLEB's is the end-to-end cost ratio.

    python -m bench.main_job --root /tmp/fresh --sleb     # bench/results/main_job.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

DECISION = ("sample_masks", "score_masks", "fit_surrogate", "estimate_shapley", "select")
RESULTS = Path("bench/results")


def stage_seconds(root: Path) -> dict[str, float]:
    """The newest MLflow run of every stage in ``root``'s store: its seconds, by run name."""
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("shapprune").experiment_id], order_by=["start_time ASC"])
    out: dict[str, float] = {}
    for run in runs:
        name = run.data.tags.get("mlflow.runName", "")
        if "mlflow.parentRunId" in run.data.tags and run.info.end_time:
            out[name] = (run.info.end_time - run.info.start_time) / 1000
    return out


def decision_cost(root: Path) -> dict[str, float]:
    """LLM evaluations and layer-token forwards spent choosing the layers (the comparison excluded)."""
    scores = json.loads((root / "data/metrics/score_masks.json").read_text())
    select = json.loads((root / "data/select/select.json").read_text())
    k = str(select["n_drops"][0])
    tokens = scores["calibration_tokens"]
    import pandas as pd

    kept = pd.read_parquet(root / "data/scores.parquet")["n_kept"].sum()
    return {
        "masks": scores["n_masks"],
        "stop_reason": scores.get("stop_reason"),
        "select": select["n_evaluations"],
        "evaluations": scores["n_masks"] + select["n_evaluations"],
        "layer_token_forwards": float(kept * tokens + select["chosen"][k].get("layer_token_forwards", 0)),
        "dropped": select["chosen"][k]["dropped"],
    }


def run_sleb(root: Path) -> dict[str, float]:
    """SLEB at prune's k in a copy of ``root`` (model and windows only), timed; its evaluations and set."""
    work = root.parent / f"{root.name}-sleb"
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    for part in ("data/model", "data/windows"):
        shutil.copytree(root / part, work / part)
    shutil.copytree(root / "data/metrics", work / "data/metrics")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["prune"]["method"] = "sleb"
    n_layers = json.loads((root / "data/metrics/prepare_model.json").read_text())["n_layers"]
    k = json.loads((root / "data/select/select.json").read_text())["n_drops"][0]
    params["score_layers"]["max_drop_ratio"] = k / n_layers  # SLEB's greedy removal to prune's k, no further
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, SHAPPRUNE_TRACKING="off")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flows.score_layers", "--root", str(work)], cwd=root, env=env, check=True)
    seconds = time.perf_counter() - start
    table = json.loads((work / "data/layer_scores/layer_scores.json").read_text())
    return {"seconds": seconds, "table": {k: v for k, v in table.items() if k != "layers"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--sleb", action="store_true")
    args = ap.parse_args()
    root = args.root.resolve()
    seconds = stage_seconds(root)
    result = {
        "machine": subprocess.run(["lscpu"], capture_output=True, text=True).stdout,
        "stage_seconds": seconds,
        "pipeline_seconds": sum(seconds.values()),
        "decision_seconds": sum(seconds.get(s, 0.0) for s in DECISION),
        "decision": decision_cost(root),
    }
    if args.sleb:
        result["sleb"] = run_sleb(root)
        result["time_ratio_default_to_sleb"] = result["decision_seconds"] / result["sleb"]["seconds"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "main_job.json").write_text(json.dumps(result, indent=2, default=str))
    lines = ["| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {s:.0f} |" for name, s in seconds.items()]
    lines.append(f"| **all stages** | **{result['pipeline_seconds']:.0f}** |")
    d = result["decision"]
    lines.append("")
    lines.append(
        f"Decision at k: {d['evaluations']} LLM evaluations ({d['masks']} masks scored, stop: {d['stop_reason']}; "
        f"{d['select']} by select), {d['layer_token_forwards']:.3g} layer-token forwards; drops {d['dropped']}."
    )
    if args.sleb:
        lines.append(
            f"SLEB at the same k: {result['sleb']['seconds']:.0f} s; default decision "
            f"{result['decision_seconds']:.0f} s (ratio {result['time_ratio_default_to_sleb']:.2f})."
        )
    (RESULTS / "main_job.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
