"""The README's commands as make spells them (``make -n``: printed, not run)."""

from __future__ import annotations

import os
import shlex
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


def test_compare_full_overrides_parse_into_the_full_comparison(tmp_path):
    """`make compare-full` (the README's one command for the 8-method comparison): DVC's own override parser
    applies its -S values to params.yaml, and the result validates as every method x 3 ratios x 2 repairs."""
    from dvc.utils.hydra import apply_overrides

    from shapprune.config import load_params
    from shapprune.config.names import PRUNE_METHODS

    line = next(x for x in _dry("compare-full").splitlines() if "dvc exp run" in x)
    words = shlex.split(line.split("dvc exp run", 1)[1])
    overrides = [w for flag, w in zip(words, words[1:]) if flag == "-S"]
    assert len(overrides) == words.count("-S") == 5
    params = Path(shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml"))
    apply_overrides(params, overrides)
    compare = load_params(params).compare
    assert set(compare.methods) == set(PRUNE_METHODS) - {"oracle", "iterative_shapley"}
    assert compare.resolve_n_drops(30) == [3, 6, 9] and compare.repairs == ["none", "linear"]
    assert compare.eval_windows is None and compare.n_items == 20
