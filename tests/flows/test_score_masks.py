"""score_masks: resume after a failure mid-stage, and Dask workers, both equal to the plain sequential run."""

from __future__ import annotations

import json
import signal

import pandas as pd
import pytest

import shapprune.checkpoint
from flows.score_masks import score_masks
from tasks.shared.guards import stage_lock
from tests.flows.conftest import update_params
from tests.flows.stage_process import run_stage


@pytest.fixture
def prepared(tiny_pipeline, tmp_path, monkeypatch):
    """What prepare_model, prepare_data and sample_masks made in the shared run; score_masks not run yet."""
    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    workspace = tiny_pipeline.copy(tmp_path / "ws", "data/model", "data/windows", "data/masks.parquet")
    update_params(workspace, "score_masks", chunk_size=4)
    return workspace


def _set(workspace, **kw):
    update_params(workspace, "score_masks", **kw)


def test_resume_after_failure_scores_only_missing_masks(prepared, monkeypatch):
    root = str(prepared)
    reference = score_masks(root=root)
    expected = pd.read_parquet(prepared / "data" / "scores.parquet")
    (prepared / "data" / "scores.parquet").unlink()

    real_append, calls = shapprune.checkpoint.ChunkStore.append, []

    def failing_append(self, rows):
        calls.append(len(rows))
        if len(calls) == 3:
            raise RuntimeError("injected failure")
        return real_append(self, rows)

    monkeypatch.setattr(shapprune.checkpoint.ChunkStore, "append", failing_append)
    with pytest.raises(RuntimeError, match="injected failure"):
        score_masks(root=root)
    monkeypatch.setattr(shapprune.checkpoint.ChunkStore, "append", real_append)
    assert not (prepared / "data" / "scores.parquet").exists()

    resumed = score_masks(root=root)
    survived = sum(calls[:2])  # the checkpoints written before the failure: never scored again
    assert survived and resumed["n_scored_this_run"] == reference["n_scored_this_run"] - survived
    pd.testing.assert_frame_equal(pd.read_parquet(prepared / "data" / "scores.parquet"), expected, check_exact=True)
    assert not (prepared / "data" / ".score_masks_work").exists() or not any(
        (prepared / "data" / ".score_masks_work").iterdir()
    )


def test_skip_prefix_and_dask_give_the_same_table(prepared):
    root = str(prepared)
    _set(prepared, prefix_reuse=False)
    score_masks(root=root)
    plain = pd.read_parquet(prepared / "data" / "scores.parquet")
    _set(prepared, prefix_reuse=True, workers=2)
    info = score_masks(root=root)
    assert info["workers"] == 2
    pd.testing.assert_frame_equal(pd.read_parquet(prepared / "data" / "scores.parquet"), plain, check_exact=True)


def test_sigkill_mid_stage_then_rerun_redoes_nothing_completed(prepared):
    reference = score_masks(root=str(prepared))
    expected = pd.read_parquet(prepared / "data" / "scores.parquet")
    (prepared / "data" / "scores.parquet").unlink()

    code, _ = run_stage(prepared, "score_masks", SHAPPRUNE_FAULT="score_masks:chunk:2")
    assert code == -signal.SIGKILL
    work = prepared / "data" / ".score_masks_work"
    chunks = list(work.glob("*/chunk_*.parquet"))
    assert len(chunks) == 2
    survived = sum(len(pd.read_parquet(c)) for c in chunks)  # the full model and the first round's first chunk
    assert not (prepared / "data" / "scores.parquet").exists()

    code, log = run_stage(prepared, "score_masks")
    assert code == 0, log[-2000:]
    metrics = json.loads((prepared / "data" / "metrics" / "score_masks.json").read_text())
    assert metrics["n_scored_this_run"] == reference["n_scored_this_run"] - survived  # mid-round: nothing twice
    pd.testing.assert_frame_equal(pd.read_parquet(prepared / "data" / "scores.parquet"), expected, check_exact=True)


def test_a_second_concurrent_run_of_a_stage_stops_with_a_clear_message(prepared):
    with stage_lock(prepared.resolve(), "score_masks"):
        code, log = run_stage(prepared, "score_masks")
    assert code == 2
    assert "stage score_masks is already running" in log.strip().splitlines()[-1]
