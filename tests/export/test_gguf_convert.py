"""GGUF written from a transformers model (no source GGUF): read back by transformers' own GGUF loader, the
weights, logits and tokenizer are the model's (exactly in F32, within the format's rounding in Q8_0)."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Qwen2Config

from shapprune.export.gguf_convert import convert_gguf, unsupported
from shapprune.models import one_gguf_parse
from tests.conftest import tiny_llama


def _model(kind: str = "llama", tied: bool = True) -> torch.nn.Module:
    """A tiny random model on SmolLM2's vocabulary, its widths multiples of 32 (Q8_0 blocks fit every row)."""
    shape = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                 tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2)  # fmt: skip
    config = LlamaConfig(**shape) if kind == "llama" else Qwen2Config(**shape)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
        for p in model.parameters():
            p.data.mul_(4.0 if p.dim() > 1 else 1.0)
    return model.eval()


@pytest.fixture(scope="module")
def folder(smol_tokenizer, tmp_path_factory):
    """SmolLM2's tokenizer saved as a pipeline stage saves it (tokenizer.json, tokenizer_config.json)."""
    path = tmp_path_factory.mktemp("tokenizer")
    smol_tokenizer.save_pretrained(path)
    return path


def _write(model, folder, out, qtype: str):
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return convert_gguf(state, model.config.to_dict(), folder, out, qtype, {"shapprune.dropped_layers": "3,4"})


def _reload(path):
    with one_gguf_parse():
        return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


@pytest.mark.parametrize(("kind", "tied"), [("llama", True), ("llama", False), ("qwen2", True)])
def test_f32_reloads_to_the_same_logits(kind, tied, folder, tmp_path, ids) -> None:
    model = _model(kind, tied)
    shipped = _write(model, folder, tmp_path / "m.gguf", "F32")
    reloaded = _reload(shipped.path)
    assert type(reloaded) is type(model) and reloaded.config.num_hidden_layers == 2
    assert reloaded.config.tie_word_embeddings == tied
    for name, w in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], w, rtol=0, atol=0, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids[:, :32]).logits, model(ids[:, :32]).logits, rtol=0, atol=1e-5)


def test_q8_0_is_within_its_rounding(folder, tmp_path, ids) -> None:
    """Q8_0 (8 bits per weight plus a scale per 32): every matrix quantised, norms F32, logits close."""
    model = _model()
    shipped = _write(model, folder, tmp_path / "m.gguf", "Q8_0")
    reader = gguf.GGUFReader(str(shipped.path))
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_q.weight"] == "Q8_0" and kinds["token_embd.weight"] == "Q8_0"
    assert kinds["blk.1.attn_norm.weight"] == "F32" and "output.weight" not in kinds  # tied head
    assert str(reader.fields["shapprune.dropped_layers"].contents()) == "3,4"
    reloaded = _reload(shipped.path)
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name, w in model.state_dict().items():  # each matrix is exactly its Q8_0 round trip, the rest exact
        if name == "lm_head.weight":
            continue
        want = w.numpy() if w.dim() == 1 else gguf.quants.dequantize(gguf.quants.quantize(w.numpy(), q8), q8)
        np.testing.assert_array_equal(reloaded.state_dict()[name].numpy(), want, err_msg=name)
    with torch.no_grad():
        want, got = model(ids[:, :32]).logits, reloaded(ids[:, :32]).logits
    assert 0 < (got - want).abs().max() < 0.05 * want.abs().max()


def test_the_tokenizer_comes_back(folder, smol_tokenizer, tmp_path) -> None:
    shipped = _write(_model(), folder, tmp_path / "m.gguf", "F32")
    back = AutoTokenizer.from_pretrained(tmp_path, gguf_file=shipped.path.name)
    text = "Layers are players; the cut is healed.  Ünïcode <|im_start|>user\nhi<|im_end|>"
    assert back(text)["input_ids"] == smol_tokenizer(text)["input_ids"]
    assert (back.bos_token_id, back.eos_token_id) == (smol_tokenizer.bos_token_id, smol_tokenizer.eos_token_id)


def test_what_cannot_be_written_is_refused_in_one_line(folder, tmp_path) -> None:
    from transformers import GPT2Config

    assert unsupported(GPT2Config().to_dict(), folder).startswith("no GGUF writer here for model_type 'gpt2'")
    scaled = _model().config.to_dict() | {"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    assert "rope scaling 'llama3'" in unsupported(scaled | {"rope_parameters": None}, folder)
    windowed = _model().config.to_dict() | {"model_type": "mistral", "sliding_window": 4096}
    assert unsupported(windowed, folder).startswith("sliding-window attention")
    assert unsupported(windowed | {"sliding_window": None}, folder) is None  # Mistral v0.2 on: full attention
    assert unsupported(tiny_llama().config.to_dict(), tmp_path) == f"no tokenizer.json in {tmp_path}"
    spec = json.loads((folder / "tokenizer.json").read_text())
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec | {"model": {"type": "Unigram"}}))
    with pytest.raises(ValueError) as err:
        convert_gguf({}, tiny_llama().config.to_dict(), tmp_path, tmp_path / "m.gguf")
    assert "not a BPE" in str(err.value) and "convert_hf_to_gguf.py" in str(err.value) and "\n" not in str(err.value)


def test_rows_that_do_not_fill_a_block_are_f16(folder, tmp_path) -> None:
    """The conftest tiny LLaMA is 16 wide: rows of 16 do not fill Q8_0's 32-blocks (F16); the MLP's
    down-projection reads 32 (Q8_0)."""
    shipped = _write(tiny_llama(2), folder, tmp_path / "m.gguf", "Q8_0")
    kinds = shipped.requantised
    assert kinds["blk.0.attn_q.weight"] == kinds["token_embd.weight"] == "F16"
    assert kinds["blk.0.ffn_down.weight"] == "Q8_0" and kinds["blk.0.ffn_norm.weight"] == "F32"


def test_under_a_4_bit_type_the_embedding_and_head_stay_q8_0(folder, tmp_path) -> None:
    written = _write(_model(tied=False), folder, tmp_path / "m.gguf", "Q4_0").requantised
    assert written["token_embd.weight"] == written["output.weight"] == "Q8_0"
    assert written["blk.0.attn_q.weight"] == written["blk.1.ffn_down.weight"] == "Q4_0"
