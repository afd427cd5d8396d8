"""The README's commands as make spells them (``make -n``: printed, not run)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _dry(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARGS", "MODEL")}
    cmd = ["make", "--no-print-directory", "-n", "ARGS=", *args]  # a later ARGS=... wins
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout


def test_repro_runs_dvc_repro_and_overrides_run_an_experiment():
    assert ". .venv/bin/activate && dvc repro \n" in _dry("repro")
    assert "dvc repro prepare_data\n" in _dry("repro", "ARGS=prepare_data")
    # `dvc repro` has no -S: overrides go through `dvc exp run`, which writes them into params.yaml
    assert "dvc exp run -S prune.ratio=0.3 prune\n" in _dry("repro", "ARGS=-S prune.ratio=0.3 prune")
    assert "dvc exp run --temp" in _dry("repro", "MODEL=gemma")
