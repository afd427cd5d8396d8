"""Helpers for the repair tests: an untied tiny LLaMA, windows sampled from a model, linear stand-in layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM

from shapprune.surgery import decoder_layers
from tests.conftest import tiny_llama

VOCAB = 512


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny models run far faster on one thread, most of all on a busy machine; restored after this package."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(n_layers: int = 6, seed: int = 0, tied: bool = True, vocab_size: int = VOCAB) -> LlamaForCausalLM:
    """tests.conftest.tiny_llama with a small vocabulary (fast logits)."""
    return tiny_llama(n_layers, seed, vocab_size, tied)


@torch.no_grad()
def sample_windows(model: nn.Module, n: int, seq_len: int, seed: int, temperature: float = 1.0) -> torch.Tensor:
    """``n`` windows of ``seq_len`` tokens sampled from ``model`` itself (int64 [n, T])."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (n, 1), generator=gen)  # [n, 1]
    for _ in range(seq_len - 1):
        logits = model(input_ids=ids, use_cache=False).logits[:, -1].double() / temperature  # [n, V]
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)  # [n, 1]
        ids = torch.cat([ids, nxt], dim=1)
    return ids


class LinearUpdate(nn.Module):
    """A stand-in decoder layer whose residual update is ``source @ A`` (``source``: a captured state [b, T, d])."""

    def __init__(self, a: torch.Tensor, source: dict) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.source = source

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return hidden_states + self.source["x"] @ self.a  # [b, T, d]


def plant_linear_layers(model: nn.Module, start: int, stop: int, seed: int, scale: float = 0.3) -> None:
    """Replace layers ``[start, stop)`` so that together they add ``M (A_start + ... )`` to the residual.

    ``M`` is the MLP output of layer ``start - 1`` (or, for ``start == 0``, the input of layer 0), so the
    run's effect is exactly linear in what the repair map sees: the fitted map is ``I + sum A``.
    """
    layers = decoder_layers(model)
    source: dict = {}
    gen = torch.Generator().manual_seed(seed)
    d = model.config.hidden_size
    dtype = next(model.parameters()).dtype
    for i in range(start, stop):
        a = (scale * torch.randn(d, d, generator=gen, dtype=torch.float64)).to(dtype)
        layers[i] = LinearUpdate(a, source)
    if start == 0:
        layers[0].register_forward_pre_hook(lambda m, args: source.__setitem__("x", args[0]))
    else:
        layers[start - 1].mlp.down_proj.register_forward_hook(lambda m, args, out: source.__setitem__("x", out))


ARCH_CONFIGS = {  # tiny configs (4 layers, hidden 16) of architectures with different layer and MLP names
    "llama": dict(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, intermediate_size=32
    ),
    "qwen2": dict(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, intermediate_size=32
    ),
    "gpt2": dict(n_embd=16, n_layer=4, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0),
    "gpt_neox": dict(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32),
    "opt": dict(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        ffn_dim=32,
        word_embed_proj_dim=16,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    ),
    "phi": dict(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32),
    "falcon": dict(hidden_size=16, num_hidden_layers=4, num_attention_heads=2),
    "gemma2": dict(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        head_dim=8,
    ),
}


def tiny_arch(name: str, seed: int = 0, **overrides: object) -> nn.Module:
    """A tiny random model of architecture ``name`` (vocabulary 128), float32, eval mode."""
    config = AutoConfig.for_model(name, vocab_size=128, **{**ARCH_CONFIGS[name], **overrides})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return model.eval()


@pytest.fixture(scope="session")
def calibration() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A tiny LLaMA (vocabulary 128) and two disjoint sets of 16 x 24 tokens sampled from it: (fit, held-out)."""
    model = tiny(vocab_size=128)
    windows = sample_windows(model, 32, 24, seed=1, temperature=0.5).numpy()  # [32, 24]
    return model, windows[:16], windows[16:]
