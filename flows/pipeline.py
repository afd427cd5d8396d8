"""The whole pipeline as one Prefect flow: runs ``dvc repro`` (or ``dvc exp run -S ...``) and reports.

Run once:                ``python -m flows.pipeline``  (same as ``dvc repro``, plus a Prefect flow run)
With overrides:          ``python -m flows.pipeline -S prune.ratio=0.3 -S base.seed=1``  (a DVC experiment)
Some stages only:        ``python -m flows.pipeline fit_surrogate``  (that stage and what it depends on)
Serve on a schedule:     ``python -m flows.pipeline --serve --cron "0 3 * * *"``; then trigger runs, with
                         overrides typed into the run form, from the Prefect UI.
A failed run is retried ``--retries`` times (default 1, after ``--retry-delay`` s): ``dvc repro`` keeps the
stages that finished and ``score_masks`` resumes from its last checkpointed chunk.

Every stage of one pipeline run logs into the same MLflow parent run (``SHAPPRUNE_PIPELINE_ID``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact

from tasks.pipeline import DvcOutput, stage_task
from tasks.shared.progress import PrefectProgress
from tasks.shared.runtime import OFFLINE_ENV


def count_stages(dvc_yaml: Path) -> int:
    """Stages ``dvc repro`` visits: one per stage, one per ``foreach`` item."""
    try:
        stages = yaml.safe_load(dvc_yaml.read_text()).get("stages") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return 0
    return sum(len(s["foreach"]) if isinstance(s, dict) and "foreach" in s else 1 for s in stages.values())


def dvc_command(overrides: dict[str, str] | None, force: bool, targets: list[str] | None = None) -> list[str]:
    """``dvc repro`` without overrides, else ``dvc exp run -S key=value ...`` (a tracked experiment).

    ``targets`` (stage names) limit the run to those stages and what they depend on.
    """
    if overrides:
        cmd = ["dvc", "exp", "run"]
        for key, value in overrides.items():
            cmd += ["-S", f"{key}={value}"]
    else:
        cmd = ["dvc", "repro"]
    cmd += list(targets or [])
    return [*cmd, "--force"] if force else cmd


@flow(name="pipeline", log_prints=True, retries=0)
def pipeline(
    overrides: dict[str, str] | None = None, force: bool = False, root: str = ".", targets: list[str] | None = None
) -> dict:
    """Reproduce the DVC pipeline, one task run per stage; fails (with the stage's output in its log) if one fails."""
    logger = get_run_logger()
    run_id = str(runtime.flow_run.id or "local")
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in OFFLINE_ENV.items()}}
    env["SHAPPRUNE_PIPELINE_ID"] = f"prefect-{run_id}"
    env.pop("PREFECT__FLOW_RUN_ID", None)
    cmd = dvc_command(overrides, force, targets)
    logger.info("running: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    total, seen = count_stages(Path(root) / "dvc.yaml"), []
    bar = PrefectProgress("pipeline-progress", f"stages of `{' '.join(cmd)}` ({total})")
    assert proc.stdout is not None
    output = DvcOutput(proc, iter(proc.stdout))
    for line in output.read():  # what dvc prints before the first stage
        logger.info(line)
    while output.next_stage is not None:
        stage, skipped = output.next_stage, output.skipped
        seen.append(stage)
        if total:  # a stage starts (or is skipped): the ones before it are done
            bar.update(100 * (len(seen) - 1) / total, f"{len(seen) - 1}/{total} stages done; now `{stage}`")
        named = stage_task.with_options(task_run_name=stage + (" (unchanged)" if skipped else ""))
        if named(stage, skipped, output, return_state=True).is_failed():
            break
    if proc.wait() != 0:
        bar.update(bar.percent, f"failed in stage `{seen[-1] if seen else '?'}`")
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n" + "\n".join(output.tail[-40:]))
    bar.update(100, f"finished: {len(set(seen))} stages visited ({total} in dvc.yaml)")
    summary_path = Path(root) / "reports" / "summary.md"
    metrics_path = Path(root) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if summary_path.is_file():
        create_markdown_artifact(summary_path.read_text(), key="shapprune-summary", description="pipeline summary")
        print(summary_path.read_text())
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("-S", "--set", action="append", default=[], help="param override key=value (a DVC experiment)")
    parser.add_argument("--force", action="store_true", help="rerun every stage")
    parser.add_argument("--root", default=".")
    parser.add_argument("targets", nargs="*", help="stages to run, with what they depend on (default: all)")
    parser.add_argument("--serve", action="store_true", help="serve as a deployment (Ctrl-C to stop)")
    parser.add_argument("--cron", default="0 3 * * *", help="schedule when serving (default: daily 03:00)")
    parser.add_argument(
        "--retries", type=int, default=1, help="rerun a failed pipeline this many times (finished stages stay cached)"
    )
    parser.add_argument("--retry-delay", type=int, default=60, help="seconds between retries")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    flow_ = pipeline.with_options(retries=args.retries, retry_delay_seconds=args.retry_delay)
    if args.serve:
        flow_.serve(
            name="shapprune-pipeline",
            cron=args.cron,
            parameters={
                "overrides": overrides or None,
                "force": args.force,
                "root": str(Path(args.root).resolve()),
                "targets": args.targets or None,
            },
        )
        return
    try:
        flow_(overrides=overrides or None, force=args.force, root=args.root, targets=args.targets or None)
    except RuntimeError as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
