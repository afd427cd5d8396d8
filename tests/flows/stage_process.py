"""Run a stage as ``python -m flows.<stage>`` in a subprocess, as DVC does, for crash and exit-code tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_env(api_url: str | None, *drop: str) -> dict[str, str]:
    """This process's environment for a stage or dvc subprocess: without an inherited Prefect API or the ``drop``
    variables, with ``api_url`` (the session's Prefect server: no temporary server per process) when given and
    this interpreter's bin first on PATH (``dvc``, ``python``)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL" and k not in drop}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_stage(root: Path, stage: str, *args: str, **env: str) -> tuple[int, str]:
    """``python -m flows.<stage>`` in its own process group, killed as a group afterwards (a SIGKILLed
    stage would orphan a temporary Prefect server, which would hold the log open). The stage reports to the
    test session's Prefect server when one runs (``prefect_api``), rather than starting its own (~15 s)."""
    from prefect.settings import PREFECT_API_URL

    full_env = child_env(PREFECT_API_URL.value(), "SHAPPRUNE_FAULT") | {"SHAPPRUNE_TRACKING": "off", **env}
    log = root / f"{stage}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"flows.{stage}", "--root", str(root), *args],
            cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            code = proc.wait(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return code, log.read_text()
