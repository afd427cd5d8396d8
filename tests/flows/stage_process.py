"""Run a stage as ``python -m flows.<stage>`` in a subprocess, as DVC does, for crash and exit-code tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_stage(root: Path, stage: str, *args: str, **env: str) -> tuple[int, str]:
    """``python -m flows.<stage>`` in its own process group, killed as a group afterwards (a SIGKILLed
    stage would orphan a temporary Prefect server, which would hold the log open). The stage reports to the
    test session's Prefect server when one runs (``prefect_api``), rather than starting its own (~15 s)."""
    from prefect.settings import PREFECT_API_URL

    full_env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "SHAPPRUNE_FAULT")}
    if api_url := PREFECT_API_URL.value():
        full_env["PREFECT_API_URL"] = api_url
    full_env |= {"SHAPPRUNE_TRACKING": "off", **env}
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
