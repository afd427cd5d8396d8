"""Tiny LLaMAs with known answers: layers made identity maps, and text the model itself generated."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from tests.conftest import tiny_llama


def make_identity(model: LlamaForCausalLM, layers: list[int]) -> LlamaForCausalLM:
    """Zero o_proj and down_proj of ``layers``: both residual branches add 0, so each layer maps h -> h."""
    with torch.no_grad():
        for i in layers:
            model.model.layers[i].self_attn.o_proj.weight.zero_()
            model.model.layers[i].mlp.down_proj.weight.zero_()
    return model


def own_text(model: LlamaForCausalLM, n: int = 4, length: int = 16, seed: int = 0) -> np.ndarray:
    """``int64[n, length]``: greedy continuations of random 4-token prompts by ``model`` itself.

    On its own greedy text the full model's perplexity is low and removing any real layer raises it, while
    removing an identity layer leaves it exactly unchanged: a known answer for perplexity criteria.
    """
    prompts = torch.as_tensor(np.random.default_rng(seed).integers(0, model.config.vocab_size, (n, 4)))
    with torch.no_grad():
        out = model.generate(
            prompts, max_new_tokens=length - 4, min_new_tokens=length - 4, do_sample=False, pad_token_id=2
        )
    return out.numpy().astype(np.int64)


@pytest.fixture(scope="module")
def identity_model() -> LlamaForCausalLM:
    """6 layers; layer 2 is an identity map."""
    return make_identity(tiny_llama(seed=0), [2])


@pytest.fixture(scope="module")
def identity_text(identity_model) -> np.ndarray:
    return own_text(identity_model)


@pytest.fixture
def windows(ids) -> np.ndarray:
    return ids.numpy().astype(np.int64)  # [3, 16]
