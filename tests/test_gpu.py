"""The CUDA path: scoring, surgery, evaluation and layer criteria on a GPU agree with the CPU.

Skipped without CUDA (CI has none); run on a GPU machine with ``pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from shapprune.baselines import layer_scores
from shapprune.evaluation import variants
from shapprune.evaluation.zero_shot import MCItem, score_items
from shapprune.models import resolve_device
from shapprune.prefix import score_with_prefix_reuse
from shapprune.scoring import masked_nll, window_nll
from shapprune.surgery import keep_layers
from tests.conftest import tiny_llama

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def pair():
    """The same tiny float32 model on the CPU and on the GPU."""
    cpu = tiny_llama(n_layers=6, seed=1)
    return cpu, copy.deepcopy(cpu).to("cuda")


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return np.random.default_rng(0).integers(3, 49152, size=(6, 32), dtype=np.int64)


def test_auto_device_is_cuda() -> None:
    assert resolve_device("auto") == "cuda"


def test_prefix_reuse_on_cuda_equals_cpu(pair, windows) -> None:
    cpu, gpu = pair
    masks = np.random.default_rng(1).random((12, 6)) < 0.6
    on_cpu, _ = score_with_prefix_reuse(cpu, windows, masks, batch_size=4)
    on_gpu, stats = score_with_prefix_reuse(gpu, windows, masks, batch_size=4)
    assert stats.saved_fraction > 0
    for a, b, mask in zip(on_cpu, on_gpu, masks):
        assert b.perplexity == pytest.approx(a.perplexity, rel=1e-4)
        assert b.perplexity == pytest.approx(masked_nll(gpu, windows, mask, 4).perplexity, rel=1e-5)


def test_surgery_on_cuda(pair, windows) -> None:
    _, gpu = pair
    keep = np.array([True, False, True, True, False, True])
    want = masked_nll(gpu, windows, keep, 3).perplexity
    pruned = keep_layers(copy.deepcopy(gpu), keep)
    assert pruned.config.num_hidden_layers == 4 and next(pruned.parameters()).is_cuda
    assert window_nll(pruned, windows, 3).perplexity == pytest.approx(want, rel=1e-5)


def test_variants_on_cuda(pair, windows) -> None:
    cpu, gpu = pair
    masks = np.stack([variants.keep_mask(6, s) for s in ([], [2], [1, 4])])
    a = variants.variant_perplexities(cpu, {"x": windows}, masks, batch_size=4)
    b = variants.variant_perplexities(gpu, {"x": windows}, masks, batch_size=4)
    assert [r["ppl_x"] for r in b] == pytest.approx([r["ppl_x"] for r in a], rel=1e-4)
    assert variants.tokens_per_second(gpu, windows, masks[2], repeats=1) > 0


@pytest.mark.parametrize("method", ["block_influence", "angular", "sleb", "ppl", "taylor"])
def test_criteria_on_cuda_choose_the_cpu_sets(pair, windows, method) -> None:
    cpu, gpu = pair
    opts = {"protect_first": 1, "protect_last": 1}  # taylor: 4 candidates of 6 layers
    a = layer_scores(method, cpu, windows, n_drops=[1, 2], rng=np.random.default_rng(0), **opts)
    b = layer_scores(method, gpu, windows, n_drops=[1, 2], rng=np.random.default_rng(0), **opts)
    assert b.drop(1) == a.drop(1) and b.drop(2) == a.drop(2)


def test_zero_shot_on_cuda_equals_cpu(pair, smol_tokenizer) -> None:
    cpu, gpu = pair
    items = [MCItem("The sky is", (" blue", " green"), 0), MCItem("Water is", (" wet", " dry", " loud"), 2)]
    a = score_items(cpu, smol_tokenizer, items, batch_size=2)
    b = score_items(gpu, smol_tokenizer, items, batch_size=2)
    np.testing.assert_allclose(b["loglik"].to_numpy(), a["loglik"].to_numpy(), rtol=1e-4, atol=1e-4)
