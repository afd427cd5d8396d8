"""Write a transformers model as a new GGUF file, for a model that did not come from one.

Where the source is a GGUF, :mod:`shapprune.export.gguf` cuts it and keeps its quantisation; this module is
for the other sources (a hub id, a local folder). It covers the decoders llama.cpp reads as ``llama``
(LLaMA, Mistral) and ``qwen2``, with a byte-level BPE tokenizer (``tokenizer.json``: SmolLM, LLaMA 3, Qwen):
the hyper-parameters from the config, the tokenizer's tokens, merges, special ids and chat template, and
every tensor under its GGUF name (``gguf``'s tensor map; LLaMA's q/k rows permuted as llama.cpp expects).
Matrices are quantised with the ``gguf`` package's own quantisers to ``qtype`` (where a row does not fill
that type's blocks, to F16), except that under a 4- or 5-bit type the embedding and the LM head are Q8_0
(as llama.cpp's own quantiser keeps them above the rest: with a tied head the embedding is the output
layer); norms and biases stay F32, as llama.cpp wants them. Anything else is refused by
:func:`unsupported` with a reason naming llama.cpp's ``convert_hf_to_gguf.py``, which covers every family.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import gguf
import numpy as np

from shapprune.export.gguf import LAYOUTS, PLAIN, GGUFExport, _quantise, hf_names

ARCHES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}  # transformers model_type -> GGUF architecture
TYPES = ("F32", "F16", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")  # what gguf.quants can write
_FILE_TYPE = {"F32": "ALL_F32", "F16": "MOSTLY_F16"}
LOW_BIT = ("Q5_1", "Q5_0", "Q4_1", "Q4_0")  # types under which the embedding and the LM head stay Q8_0
EDGES = ("token_embd.weight", "output.weight")
CONVERTER = "convert data/export/model with llama.cpp's convert_hf_to_gguf.py"


def _rope_theta(config: Mapping) -> float:
    rope = config.get("rope_parameters") or {}
    return float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))


def _rope_type(config: Mapping) -> str:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    return rope.get("rope_type", rope.get("type", "default"))


def unsupported(config: Mapping, tokenizer_dir: Path) -> str | None:
    """Why this model cannot be converted here (one phrase), or None when it can."""
    model_type = config.get("model_type")
    if model_type not in ARCHES:
        return f"no GGUF writer here for model_type '{model_type}' (only {', '.join(ARCHES)})"
    if config.get("sliding_window") and config.get("use_sliding_window", True):
        return "sliding-window attention is not written here (llama.cpp's llama architecture attends to all)"
    if _rope_type(config) != "default":
        return f"rope scaling '{_rope_type(config)}' is not written here"
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        return f"no tokenizer.json in {tokenizer_dir}"
    model = json.loads(path.read_text()).get("model", {})
    if model.get("type") != "BPE" or not model.get("merges"):
        return f"the tokenizer is {model.get('type')}, not a BPE with merges"
    return None


def _tokens(tokenizer_dir: Path, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Token strings and types by id (gaps: ``[PAD<i>]``, unused), and the merges as ``"a b"`` strings."""
    spec = json.loads((Path(tokenizer_dir) / "tokenizer.json").read_text())
    by_id = {i: (t, gguf.TokenType.NORMAL) for t, i in spec["model"]["vocab"].items()}
    for added in spec.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (added["content"], kind)
    size = max(vocab_size, max(by_id) + 1)
    tokens = [by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED)) for i in range(size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return [t for t, _ in tokens], [int(k) for _, k in tokens], merges


def convert_gguf(
    state: Mapping[str, np.ndarray],
    config: Mapping,
    tokenizer_dir: Path,
    out: Path,
    qtype: str = "Q8_0",
    extra: Mapping[str, str] | None = None,
) -> GGUFExport:
    """Write ``state`` (float32 state dict of a model with ``config``, the config.json dict) as ``out``."""
    reason = unsupported(config, tokenizer_dir)
    if reason is not None:
        raise ValueError(f"GGUF export: {reason}; {CONVERTER}")
    if qtype not in TYPES:
        raise ValueError(f"GGUF export: type '{qtype}' is not one of {', '.join(TYPES)}")
    arch = ARCHES[config["model_type"]]
    n_blocks, heads = int(config["num_hidden_layers"]), int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or config["hidden_size"] // heads)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(n_blocks)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_file_type(getattr(gguf.LlamaFileType, _FILE_TYPE.get(qtype, f"MOSTLY_{qtype}")))
    tokens, types, merges = _tokens(tokenizer_dir, int(config["vocab_size"]))
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    gguf.SpecialVocab(tokenizer_dir, load_merges=False, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
    for key, value in (extra or {}).items():
        writer.add_string(key, value)
    layout = LAYOUTS.get(arch, PLAIN)
    names = {hf: g for g, hf in hf_names(list(state), arch, n_blocks).items()}
    tied = bool(config.get("tie_word_embeddings", False))
    result = GGUFExport(out, n_blocks)
    wanted = gguf.GGMLQuantizationType[qtype]
    for hf, w in state.items():
        if hf.endswith("rotary_emb.inv_freq") or (tied and hf == "lm_head.weight"):
            continue
        name = names.get(hf)
        if name is None:
            raise ValueError(f"GGUF export: no GGUF name for the tensor '{hf}'; {CONVERTER}")
        w = np.asarray(w, dtype=np.float32)
        if w.ndim == 2:
            edge = name in EDGES and qtype in LOW_BIT
            kind = gguf.GGMLQuantizationType.Q8_0 if edge else wanted
            data, written = _quantise(layout.to_gguf(name, w, (heads, kv_heads)), kind)  # F16 if rows do not fit
        else:
            data, written = w, gguf.GGMLQuantizationType.F32
        writer.add_tensor(name, data, raw_dtype=written)
        result.requantised[name] = written.name
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return result
