"""GGUF export of the real default model: kept blocks copied byte for byte, changed tensors quantised again,
and the file read back by transformers' own GGUF loader gives the pruned model's logits."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from shapprune.export.gguf import LAYOUTS, _permute, _quantise, _unpermute, changed_tensor_type, export_gguf
from shapprune.models import load_model, one_gguf_parse
from shapprune.surgery import keep_layers
from tests.conftest import SMOL_GGUF, smol_dir

KEPT = [0, 19, 29]  # blocks far apart, renumbered 0, 1, 2 (a few blocks: the file reloads in seconds)
HEADS = (9, 3)  # SmolLM2-135M: 9 query heads, 3 key/value heads


@pytest.fixture(scope="module")
def pruned():
    """The default model cut to KEPT, fp32, as the pipeline's prune stage leaves it (plus tokenizer)."""
    model, tokenizer = load_model(str(smol_dir() / SMOL_GGUF))
    keep = np.isin(np.arange(30), KEPT)
    return keep_layers(model, keep), tokenizer


def _state(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _reload(path):
    with one_gguf_parse():  # transformers alone parses the file twice (config, weights)
        return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def source() -> gguf.GGUFReader:
    return gguf.GGUFReader(str(smol_dir() / SMOL_GGUF))  # parsing its 49k-token vocabulary takes seconds


@pytest.fixture(scope="module")
def ids(pruned):
    return pruned[1]("The capital of France is Paris; the capital of Italy is", return_tensors="pt").input_ids


@pytest.mark.slow
def test_a_pruned_model_is_copied_byte_for_byte_and_gives_the_same_logits(pruned, ids, source, tmp_path):
    model, _ = pruned
    out = export_gguf(smol_dir() / SMOL_GGUF, tmp_path / "m.gguf", KEPT, _state(model), HEADS, {"x.note": "hi"})
    assert out.requantised == {} and len(out.copied) == 1 + 3 * 9 + 1  # embedding, 9 per block, final norm
    reader = gguf.GGUFReader(str(out.path))
    assert reader.fields["llama.block_count"].contents() == 3
    assert reader.fields["x.note"].contents() == "hi"
    assert out.license == "apache-2.0"
    src = {t.name: t for t in source.tensors}
    for t in reader.tensors:  # blk.1 of the export is blk.19 of the source, bytes and type unchanged
        block, _, rest = t.name.partition(".")[2].partition(".")
        origin = f"blk.{KEPT[int(block)]}.{rest}" if t.name.startswith("blk.") else t.name
        assert t.tensor_type == src[origin].tensor_type and np.array_equal(t.data, src[origin].data), t.name
    reloaded = _reload(out.path)
    assert reloaded.config.num_hidden_layers == 3
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)
    tokenizer_keys = [k for k in source.fields if k.startswith("tokenizer.")]
    assert len(tokenizer_keys) > 5  # the tokenizer travelled with it, field for field
    for key in tokenizer_keys:
        assert reader.fields[key].contents() == source.fields[key].contents(), key


@pytest.mark.slow
def test_tensors_a_repair_changed_are_quantised_again_in_their_own_type(pruned, ids, tmp_path):
    model, _ = pruned
    state = _state(model)
    rng = np.random.default_rng(0)
    changed = {"model.layers.1.mlp.down_proj.weight": "blk.1.ffn_down.weight",
               "model.layers.2.self_attn.k_proj.weight": "blk.2.attn_k.weight"}  # fmt: skip
    for hf in changed:  # a merged repair: the weight moves by about its own scale
        state[hf] = state[hf] + 0.5 * state[hf].std() * rng.standard_normal(state[hf].shape).astype(np.float32)
    out = export_gguf(smol_dir() / SMOL_GGUF, tmp_path / "m.gguf", KEPT, state, HEADS)
    assert out.requantised == {name: "Q4_1" for name in changed.values()}
    reloaded = _reload(out.path).state_dict()
    for hf, value in state.items():
        got = reloaded[hf].numpy()
        if hf in changed:  # Q4_1 of the new weight (a wrong rotary permutation would be off by the weight itself)
            err = np.abs(got - value).max() / np.abs(value).max()
            assert err < 0.1 and not np.array_equal(got, model.state_dict()[hf].numpy()), hf
        else:
            assert np.array_equal(got, value), hf


@pytest.mark.slow  # loads the real default model (about 30 s)
def test_a_plain_cut_needs_no_model(pruned, tmp_path):
    """state=None copies the kept blocks as they are: the same file as exporting the unchanged pruned model."""
    plain = export_gguf(smol_dir() / SMOL_GGUF, tmp_path / "plain.gguf", KEPT, None, HEADS)
    via_model = export_gguf(smol_dir() / SMOL_GGUF, tmp_path / "model.gguf", KEPT, _state(pruned[0]), HEADS)
    assert plain.path.read_bytes() == via_model.path.read_bytes() and plain.requantised == {}


def test_the_rotary_permutation_and_gemma_norm_offset_invert():
    w = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)
    for heads in (1, 2, 3, 6):
        assert np.array_equal(_unpermute(_permute(w, heads), heads), w)
    assert not np.array_equal(_permute(w, 3), w)
    for arch, layout in LAYOUTS.items():
        for name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_norm.weight", "output_norm.weight"):
            assert np.allclose(layout.to_hf(name, layout.to_gguf(name, w, (6, 3)), (6, 3)), w), (arch, name)


def test_types_gguf_cannot_quantise_fall_back_to_q8_0_then_f16():
    w = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
    assert _quantise(w, gguf.GGMLQuantizationType.Q4_1)[1] == gguf.GGMLQuantizationType.Q4_1
    assert _quantise(w, gguf.GGMLQuantizationType.Q4_K)[1] == gguf.GGMLQuantizationType.Q8_0  # no K-quantiser
    data, qtype = _quantise(w[:, :40], gguf.GGMLQuantizationType.Q4_1)  # 40 columns fit no 32-wide block
    assert qtype == gguf.GGMLQuantizationType.F16 and data.dtype == np.float16
    data, qtype = _quantise(w, gguf.GGMLQuantizationType.F32)
    assert qtype == gguf.GGMLQuantizationType.F32 and np.array_equal(data, w)


def test_a_small_change_survives_q8_0_but_a_second_q4_1_rounding_loses_it():
    """A LoRA-sized change (5 % of the weights' scale) of a Q4_1 source tensor: Q8_0 keeps it, Q4_1 does not."""
    q4_1 = gguf.GGMLQuantizationType.Q4_1
    rng = np.random.default_rng(0)
    source = gguf.quants.dequantize(gguf.quants.quantize(rng.standard_normal((64, 256)).astype(np.float32), q4_1), q4_1)
    delta = 0.05 * source.std() * rng.standard_normal(source.shape).astype(np.float32)  # [64, 256]
    new = source + delta

    def lost(changed_type: str) -> float:  # ||written - new|| / ||delta||: 0 keeps the change, ~1 or more loses it
        data, qtype = _quantise(new, changed_tensor_type(q4_1, changed_type))
        return float(np.linalg.norm(gguf.quants.dequantize(data, qtype) - new) / np.linalg.norm(delta))

    assert lost("Q8_0") < 0.3 < 1.0 < lost("source")
    assert lost("F16") < 0.01


def test_changed_tensor_types():
    types = gguf.GGMLQuantizationType
    assert changed_tensor_type(types.Q4_1, "source") == types.Q4_1
    assert changed_tensor_type(types.Q4_1, "Q8_0") == types.Q8_0
    assert changed_tensor_type(types.F32, "Q8_0") == types.F32  # a norm stays float32
    with pytest.raises(ValueError, match="unknown tensor type 'Q9'"):
        changed_tensor_type(types.Q4_1, "Q9")
