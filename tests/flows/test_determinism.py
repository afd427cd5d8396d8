"""Same params and seeds -> byte-identical masks, scores (CPU), Shapley table, pruning choice and healed weights."""

from __future__ import annotations

import hashlib
import json

import pytest

from flows.estimate_shapley import estimate_shapley
from flows.fit_surrogate import fit_surrogate
from flows.prepare_data import prepare_data
from flows.prepare_model import prepare_model
from flows.prune import prune
from flows.repair import repair
from flows.sample_masks import sample_masks
from flows.score_masks import score_masks
from flows.select import select
from tests.flows.conftest import update_params

STAGES = (prepare_model, prepare_data, sample_masks, score_masks, fit_surrogate, estimate_shapley, select, prune)
HASHED = (
    "data/windows/calibration.parquet",
    "data/masks.parquet",
    "data/scores.parquet",
    "data/surrogate/surrogate.safetensors",
    "data/shapley/shapley.csv",
    "data/select/candidates.parquet",
)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_runs_give_identical_artifacts(tiny_pipeline, workspace, monkeypatch):
    """A fresh run with the shared run's params (that one tracked in MLflow, this one not) gives the same bytes."""
    shared = tiny_pipeline.root
    assert (workspace / "params.yaml").read_text() == (shared / "params.yaml").read_text()
    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    for stage in STAGES:
        stage(root=str(workspace))
    for rel in HASHED:
        assert _sha(workspace / rel) == _sha(shared / rel), rel
    a, b = (json.loads((r / "data/pruned/pruning.json").read_text()) for r in (workspace, shared))
    assert a["dropped_layers"] == b["dropped_layers"]
    assert _sha(workspace / "data/pruned/model.safetensors") == _sha(shared / "data/pruned/model.safetensors")


@pytest.mark.parametrize("seed", [7])
def test_another_seed_gives_other_masks(tiny_pipeline, tmp_path, monkeypatch, seed):
    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    other = tiny_pipeline.copy(tmp_path / "other", "data/model")  # prepare_model reads base.model only
    update_params(other, "base", seed=seed)
    sample_masks(root=str(other))
    assert _sha(tiny_pipeline.root / "data/masks.parquet") != _sha(other / "data/masks.parquet")


def test_lora_healing_twice_gives_byte_identical_weights(tiny_pipeline, tmp_path, monkeypatch):
    """The refit and LoRA, merged, from the same pruned model and windows: the same bytes, run after run."""
    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    weights = []
    for name in ("first", "second"):
        root = tiny_pipeline.copy(tmp_path / name, "data/model", "data/pruned", "data/windows")
        update_params(root, "repair", method="linear+lora")
        info = repair(root=str(root))
        assert info["method"] == "linear+lora" and info["lora"]["steps"] == 4
        weights.append(_sha(root / "data/repaired/model.safetensors"))
    assert weights[0] == weights[1]
    assert weights[0] != _sha(tiny_pipeline.root / "data/repaired/model.safetensors")  # the LoRA changed them
