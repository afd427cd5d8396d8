"""Tiny randomly initialised models of every architecture family the tests cover (one config each)."""

from __future__ import annotations

import torch
import transformers as hf

VOCAB = 128
N_LAYERS = 6
_COMMON = {"vocab_size": VOCAB, "hidden_size": 16, "num_hidden_layers": N_LAYERS}
_ATTENTION = {
    "intermediate_size": 32,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 64,
}
_GEMMA3_TYPES = ["sliding_attention", "sliding_attention", "full_attention"] * 2
_SSM = {"state_size": 4, "expand": 2, "conv_kernel": 4}

CONFIGS = {
    "llama": lambda: hf.LlamaConfig(**_COMMON, **_ATTENTION),
    "qwen2": lambda: hf.Qwen2Config(**_COMMON, **_ATTENTION),
    "qwen3": lambda: hf.Qwen3Config(**_COMMON, **_ATTENTION, head_dim=8),
    "mistral": lambda: hf.MistralConfig(**_COMMON, **_ATTENTION, sliding_window=4),
    "phi3": lambda: hf.Phi3Config(**_COMMON, **_ATTENTION, pad_token_id=0),
    "gemma2": lambda: hf.Gemma2Config(**_COMMON, **_ATTENTION, head_dim=8, sliding_window=4),
    "gemma3": lambda: hf.Gemma3TextConfig(
        **_COMMON, **_ATTENTION, head_dim=8, sliding_window=4, layer_types=_GEMMA3_TYPES
    ),
    "gpt_neox": lambda: hf.GPTNeoXConfig(
        **_COMMON, intermediate_size=32, num_attention_heads=2, max_position_embeddings=64
    ),
    "mamba": lambda: hf.MambaConfig(**_COMMON, **_SSM),
    "falcon_mamba": lambda: hf.FalconMambaConfig(**_COMMON, **_SSM),
    "mamba2": lambda: hf.Mamba2Config(
        **_COMMON, state_size=8, expand=2, conv_kernel=4, n_groups=1, num_heads=4, head_dim=8, chunk_size=8
    ),
    # rescale_every=2: RWKV's position-dependent fp16 rescaling is active inside six layers
    "rwkv": lambda: hf.RwkvConfig(
        **_COMMON, attention_hidden_size=16, intermediate_size=32, context_length=64, rescale_every=2
    ),
}
# Families whose layer output is not ``residual + MLP output`` (a norm after the MLP, a gate): the
# training-free linear repair cannot be merged there and says so; LoRA healing still applies.
NOT_ADDITIVE = {"gemma2", "gemma3", "rwkv"}


def tiny(family: str, seed: int = 0) -> hf.PreTrainedModel:
    """A tiny random model of ``family`` in eval mode."""
    config = CONFIGS[family]()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return hf.AutoModelForCausalLM.from_config(config).eval()
