"""The whole pipeline as one Prefect flow: runs ``dvc repro`` (or ``dvc exp run -S ...``) and reports.

Run once:                ``python -m flows.pipeline``  (same as ``dvc repro``, plus a Prefect flow run)
With overrides:          ``python -m flows.pipeline -S prune.ratio=0.3 -S base.seed=1``  (a DVC experiment)
Serve on a schedule:     ``python -m flows.pipeline --serve --cron "0 3 * * *"``; then trigger runs, with
                         overrides typed into the run form, from the Prefect UI.

Every stage of one pipeline run logs into the same MLflow parent run (``SHAPPRUNE_PIPELINE_ID``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact

from tasks.runtime import OFFLINE_ENV


def dvc_command(overrides: dict[str, str] | None, force: bool) -> list[str]:
    """``dvc repro`` without overrides, else ``dvc exp run -S key=value ...`` (a tracked experiment)."""
    if overrides:
        cmd = ["dvc", "exp", "run"]
        for key, value in overrides.items():
            cmd += ["-S", f"{key}={value}"]
    else:
        cmd = ["dvc", "repro"]
    return [*cmd, "--force"] if force else cmd


@flow(name="pipeline", log_prints=True, retries=0)
def pipeline(overrides: dict[str, str] | None = None, force: bool = False, root: str = ".") -> dict:
    """Reproduce the DVC pipeline; fails (with the failing stage's output in the log) if any stage fails."""
    logger = get_run_logger()
    run_id = str(runtime.flow_run.id or "local")
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in OFFLINE_ENV.items()}}
    env["SHAPPRUNE_PIPELINE_ID"] = f"prefect-{run_id}"
    env.pop("PREFECT__FLOW_RUN_ID", None)
    cmd = dvc_command(overrides, force)
    logger.info("running: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-200:]
        if line.startswith(("Running stage", "stage ", "error:", "ERROR", "WARNING")) or "scored" in line:
            logger.info(line)
    if proc.wait() != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n" + "\n".join(tail[-40:]))
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
    parser.add_argument("--serve", action="store_true", help="serve as a deployment (Ctrl-C to stop)")
    parser.add_argument("--cron", default="0 3 * * *", help="schedule when serving (default: daily 03:00)")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    if args.serve:
        pipeline.serve(
            name="shapprune-pipeline",
            cron=args.cron,
            parameters={"overrides": overrides or None, "force": args.force, "root": str(Path(args.root).resolve())},
        )
        return
    try:
        pipeline(overrides=overrides or None, force=args.force, root=args.root)
    except RuntimeError as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
