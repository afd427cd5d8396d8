"""score_masks' workers: one GPU per Dask worker, and one model and prefix cache per worker across chunks."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

import tasks.score_masks as sm
from shapprune.models import save_model
from shapprune.prefix import lexicographic_order
from shapprune.sampling import stratified_masks
from shapprune.scoring import masked_nll
from tasks.shared.artifacts import mask_bits
from tests.conftest import tiny_llama


def _in_worker(monkeypatch, name, gpus: int) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    fake = types.SimpleNamespace(get_worker=lambda: types.SimpleNamespace(name=name))
    monkeypatch.setitem(sys.modules, "distributed", fake)


@pytest.mark.parametrize(
    ("device", "name", "gpus", "expected"),
    [("cuda", 0, 4, "cuda:0"), ("cuda", 5, 4, "cuda:1"), ("cuda", "7", 2, "cuda:1"), ("cuda", "gpu-box-a", 4, "cuda"),
     ("cuda", 3, 1, "cuda"), ("cuda:2", 3, 4, "cuda:2"), ("cpu", 3, 4, "cpu")],
)  # fmt: skip
def test_each_local_dask_worker_takes_its_own_gpu(monkeypatch, device, name, gpus, expected):
    _in_worker(monkeypatch, name, gpus)
    assert sm.worker_device(device) == expected


def test_outside_a_worker_the_device_is_unchanged(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)

    def no_worker():
        raise ValueError("No worker found")

    monkeypatch.setitem(sys.modules, "distributed", types.SimpleNamespace(get_worker=no_worker))
    assert sm.worker_device("cuda") == "cuda"


@pytest.mark.slow  # saves and loads a model
def test_a_worker_keeps_its_model_and_prefix_cache_across_chunks(tmp_path, smol_tokenizer, ids, monkeypatch):
    save_model(tiny_llama(), smol_tokenizer, tmp_path / "model")
    np.save(tmp_path / "windows.npy", ids.numpy())
    monkeypatch.setattr(sm, "read_windows", lambda path: np.load(path))
    setup = sm.ScoringSetup(str(tmp_path / "model"), str(tmp_path / "windows.npy"), "float32", "cpu", 2, True, 64.0)
    masks = stratified_masks(6, [5, 4], [6, 6], np.random.default_rng(0))
    masks = masks[lexicographic_order(masks)]
    bits = mask_bits(masks)
    monkeypatch.setattr(sm, "_WORKER_SCORER", {})
    first = sm.score_chunk.fn(setup, list(range(6)), bits[:6])
    scorer = sm.worker_scorer(setup)
    hits = scorer.prefix.stats.cache_hits
    second = sm.score_chunk.fn(setup, list(range(6, 12)), bits[6:])
    assert sm.worker_scorer(setup) is scorer and scorer.prefix.stats.cache_hits > hits
    model = sm.worker_model(setup)
    want = [masked_nll(model, ids.numpy(), m, batch_size=2).total for m in masks]
    assert [*first["nll_sum"], *second["nll_sum"]] == want  # bit-identical to scoring each mask alone
