"""Write a pruned (and repaired) model as a GGUF file that keeps the source GGUF's quantisation.

The source file's metadata (tokenizer included) is copied; the kept blocks' tensors are renumbered
``blk.<i>`` -> ``blk.<position among the kept>``; the block count (and any per-block metadata array) is
cut to the kept blocks. A tensor whose weights are those of the source (after transformers' own GGUF
unpacking) is copied byte for byte; one that the repair changed is quantised again, to ``changed_type``
(``"source"``: the source tensor's own type), where the ``gguf`` package can quantise that type, else to
``Q8_0`` (or F16 where rows do not fit Q8_0 blocks); a float32 tensor of the source (a norm) stays
float32. A second rounding to a coarse source type (Q4_1) undoes most of a LoRA's small change, so the
pipeline writes changed tensors in Q8_0 by default. The weight layouts that transformers changes on load
(LLaMA's rotary permutation of q/k, Gemma's norm offset of 1) are undone on the way back, in :data:`LAYOUTS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")
_COPY_SKIP = ("GGUF.", "general.architecture")
FALLBACK = gguf.GGMLQuantizationType.Q8_0


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary permutation of a q/k weight (rows, cols): the inverse of transformers' unpacking."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@dataclass(frozen=True)
class Layout:
    """How one architecture's GGUF tensors differ from transformers' (``heads``: (q heads, kv heads))."""

    to_hf: Callable[[str, np.ndarray, tuple[int, int]], np.ndarray]
    to_gguf: Callable[[str, np.ndarray, tuple[int, int]], np.ndarray]


def _identity(name: str, w: np.ndarray, heads: tuple[int, int]) -> np.ndarray:
    return w


def _qk_heads(name: str, heads: tuple[int, int]) -> int | None:
    return heads[0] if ".attn_q." in name else heads[1] if ".attn_k." in name else None


def _llama_to_hf(name: str, w: np.ndarray, heads: tuple[int, int]) -> np.ndarray:
    n = _qk_heads(name, heads)
    return w if n is None else _unpermute(w, n)


def _llama_to_gguf(name: str, w: np.ndarray, heads: tuple[int, int]) -> np.ndarray:
    n = _qk_heads(name, heads)
    return w if n is None else _permute(w, n)


def _gemma_to_hf(name: str, w: np.ndarray, heads: tuple[int, int]) -> np.ndarray:
    return w - 1 if "norm.weight" in name else w


def _gemma_to_gguf(name: str, w: np.ndarray, heads: tuple[int, int]) -> np.ndarray:
    return w + 1 if "norm.weight" in name else w


# what transformers' GGUF loader does to each architecture's tensors (its TensorProcessors), and back
LAYOUTS: dict[str, Layout] = {
    "llama": Layout(_llama_to_hf, _llama_to_gguf),
    "gemma2": Layout(_gemma_to_hf, _gemma_to_gguf),
    "gemma3": Layout(_gemma_to_hf, _gemma_to_gguf),
}
PLAIN = Layout(_identity, _identity)


@dataclass
class GGUFExport:
    """What :func:`export_gguf` wrote: tensors copied as they were and tensors quantised again."""

    path: Path
    n_blocks: int
    license: str | None = None  # the source's ``general.license``
    copied: list[str] = field(default_factory=list)
    requantised: dict[str, str] = field(default_factory=dict)  # GGUF name -> the type it was written in

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size


def architecture(reader: gguf.GGUFReader) -> str:
    return str(reader.fields["general.architecture"].contents())


def hf_names(state_names: Sequence[str], arch: str, n_blocks: int) -> dict[str, str]:
    """GGUF tensor name -> transformers state-dict name, for the names ``gguf``'s tensor map knows."""
    arch_id = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch)
    if arch_id is None:
        raise ValueError(f"GGUF export: architecture '{arch}' is unknown to the gguf package; update gguf")
    names = gguf.get_tensor_name_map(arch_id, n_blocks)
    out = {}
    for hf in state_names:
        stem, dot, suffix = hf.rpartition(".")
        mapped = names.get_name(stem)
        if mapped is not None:
            out[f"{mapped}{dot}{suffix}"] = hf
    return out


def _quantise(w: np.ndarray, source_type: gguf.GGMLQuantizationType) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """``w`` float32 (rows, cols) in ``source_type`` where the gguf package can, else Q8_0, else F16."""
    if source_type == gguf.GGMLQuantizationType.F32:
        return w.astype(np.float32), source_type
    for qtype in (source_type, FALLBACK, gguf.GGMLQuantizationType.F16):
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if w.shape[-1] % block:
            continue
        if qtype == gguf.GGMLQuantizationType.F16:
            return w.astype(np.float16), qtype
        try:
            return gguf.quants.quantize(w.astype(np.float32), qtype), qtype
        except NotImplementedError:
            continue
    return w.astype(np.float16), gguf.GGMLQuantizationType.F16


def _copy_metadata(reader: gguf.GGUFReader, writer: gguf.GGUFWriter, arch: str, kept: Sequence[int]) -> None:
    n_source = int(reader.fields[f"{arch}.block_count"].contents())
    for key, value in reader.fields.items():
        if key.startswith(_COPY_SKIP):
            continue
        vtype = value.types[0]
        sub = value.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        contents = value.contents()
        if key == f"{arch}.block_count":
            contents = len(kept)
        elif key.startswith(f"{arch}.") and sub is not None and len(contents) == n_source:
            contents = [contents[i] for i in kept]  # a per-block array: the kept blocks' entries
        writer.add_key_value(key, contents, vtype, sub_type=sub)


def attention_heads(config: object) -> tuple[int, int]:
    """``(query heads, key/value heads)`` of a transformers config (no ``num_key_value_heads``: the same)."""
    return config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads


def changed_tensor_type(source_type: gguf.GGMLQuantizationType, changed_type: str) -> gguf.GGMLQuantizationType:
    """The type a changed tensor is written in: ``changed_type`` (a GGML type name), or ``"source"``'s own."""
    if changed_type == "source" or source_type == gguf.GGMLQuantizationType.F32:
        return source_type
    try:
        return gguf.GGMLQuantizationType[changed_type]
    except KeyError:
        raise ValueError(f"GGUF export: unknown tensor type '{changed_type}'; use source, F16, Q8_0, ...") from None


def export_gguf(
    source: Path,
    out: Path,
    kept: Sequence[int],
    state: Mapping[str, np.ndarray] | None,
    heads: tuple[int, int],
    extra: Mapping[str, str] | None = None,
    changed_type: str = "source",
) -> GGUFExport:
    """Write the GGUF of the model whose state dict is ``state`` (float32, blocks renumbered 0..K-1).

    ``kept``: the source blocks that model kept, in order; ``heads``: (attention heads, kv heads);
    ``extra``: string metadata to add (e.g. ``shapprune.dropped_layers``). ``state=None`` is a plain cut: the
    kept blocks copied as they are, no model needed. ``changed_type``: the type of the tensors that differ
    from the source's (see the module docstring).
    """
    changed_tensor_type(gguf.GGMLQuantizationType.Q4_0, changed_type)  # a bad name fails before any writing
    reader = gguf.GGUFReader(str(source))
    arch = architecture(reader)
    layout = LAYOUTS.get(arch, PLAIN)
    to_hf = hf_names(list(state), arch, len(kept)) if state is not None else {}
    new_index = {old: new for new, old in enumerate(kept)}
    licence = reader.fields.get("general.license")
    result = GGUFExport(Path(out), len(kept), None if licence is None else str(licence.contents()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), arch)
    _copy_metadata(reader, writer, arch, kept)
    for key, value in (extra or {}).items():
        writer.add_string(key, value)
    seen_hf = set()
    for tensor in reader.tensors:
        name = tensor.name
        block = _BLOCK.match(name)
        if block:
            if int(block.group(1)) not in new_index:
                continue
            name = f"blk.{new_index[int(block.group(1))]}.{block.group(2)}"
        if state is None:
            writer.add_tensor(name, tensor.data, raw_dtype=tensor.tensor_type)
            result.copied.append(name)
            continue
        hf = to_hf.get(name)
        if hf is None:
            raise ValueError(f"GGUF export: no transformers tensor matches '{name}' (from {tensor.name})")
        seen_hf.add(hf)
        new = np.asarray(state[hf], dtype=np.float32)
        old = layout.to_hf(name, gguf.quants.dequantize(tensor.data, tensor.tensor_type), heads)
        if old.shape != new.shape:
            raise ValueError(
                f"GGUF export: {hf} is {tuple(new.shape)} but the source's {tensor.name} is {tuple(old.shape)}: "
                "the model does not come from this GGUF; rerun the pipeline from prepare_model"
            )
        if np.array_equal(old, new):
            writer.add_tensor(name, tensor.data, raw_dtype=tensor.tensor_type)
            result.copied.append(name)
        else:
            target = changed_tensor_type(tensor.tensor_type, changed_type)
            data, qtype = _quantise(layout.to_gguf(name, new, heads), target)
            writer.add_tensor(name, data, raw_dtype=qtype)
            result.requantised[name] = qtype.name
    missing = sorted(set(to_hf.values()) - seen_hf - {"lm_head.weight"})  # a tied head has no tensor of its own
    if missing:
        raise ValueError(f"GGUF export: the model has tensors the source GGUF lacks: {missing[:4]}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return result
