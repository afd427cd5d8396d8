"""Same params and seeds -> byte-identical masks, scores (CPU), Shapley table and pruning choice."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from flows.estimate_shapley import estimate_shapley
from flows.fit_surrogate import fit_surrogate
from flows.prepare_data import prepare_data
from flows.prepare_model import prepare_model
from flows.prune import prune
from flows.sample_masks import sample_masks
from flows.score_masks import score_masks
from flows.select import select

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


def test_two_runs_give_identical_artifacts(workspace, tmp_path, monkeypatch, prefect_api):
    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    second = tmp_path / "second"
    second.mkdir()
    shutil.copy(workspace / "params.yaml", second / "params.yaml")
    for root in (workspace, second):
        for stage in STAGES:
            stage(root=str(root))
    for rel in HASHED:
        assert _sha(workspace / rel) == _sha(second / rel), rel
    a, b = (json.loads((r / "data/pruned/pruning.json").read_text()) for r in (workspace, second))
    assert a["dropped_layers"] == b["dropped_layers"]
    assert _sha(workspace / "data/pruned/model.safetensors") == _sha(second / "data/pruned/model.safetensors")


@pytest.mark.parametrize("seed", [7])
def test_another_seed_gives_other_masks(workspace, tmp_path, monkeypatch, seed, prefect_api):
    import yaml

    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    other = tmp_path / "other"
    other.mkdir()
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["base"]["seed"] = seed
    (other / "params.yaml").write_text(yaml.safe_dump(params))
    for root in (workspace, other):
        for stage in (prepare_model, sample_masks):
            stage(root=str(root))
    assert _sha(workspace / "data/masks.parquet") != _sha(other / "data/masks.parquet")
