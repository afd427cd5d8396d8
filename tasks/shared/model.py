"""Prefect tasks around model loading and saving."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError, Params
from shapprune.integrity import CorruptModelError
from shapprune.models import (
    MAP,
    cpu_has_fast_bf16,
    input_device,
    load_model,
    resolve_device,
    resolve_dtype,
    slow_dtype_warning,
)
from shapprune.targets import LayerCount

# data/<dir> -> the DVC stage that writes it
REBUILT_BY = {"model": "prepare_model", "pruned": "prune", "repaired": "repair"}


def explain_corrupt(err: CorruptModelError) -> ConfigError:
    """The one-line error for a damaged model file, naming the stage to rerun when DVC made the file."""
    folder = err.path if err.path.is_dir() else err.path.parent
    stage = REBUILT_BY.get(folder.name) if folder.parent.name == "data" else None
    fix = f"rerun `dvc repro -f {stage}`" if stage else err.fix
    try:
        shown = err.path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = err.path
    return ConfigError(f"{shown} is corrupt ({err.reason}); {fix}")


@task(name="load-model", cache_policy=NO_CACHE)
def load_stage_model(model_dir: Path, params: Params, dtype: str = "base") -> tuple[object, object, str]:
    """Load a saved model directory with the device and dtype from ``base``; returns (model, tokenizer, device).

    ``dtype`` other than ``"base"`` overrides ``base.dtype`` (``evaluate.dtype``). With ``base.device: map``
    the returned device is the input embedding's (where token ids go)."""
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir}: no saved model; run `dvc repro prepare_model` first")
    device = resolve_device(params.base.device)
    dtype = resolve_dtype(params.base.dtype if dtype == "base" else dtype, device)
    warn_if_slow(dtype, device)
    try:
        model, tokenizer = load_model(str(model_dir), dtype=dtype, device=device)
    except CorruptModelError as err:
        raise explain_corrupt(err) from None
    return model, tokenizer, str(input_device(model)) if device == MAP else device


def warn_if_slow(dtype: torch.dtype, device: str) -> None:
    """Print ``slow_dtype_warning``'s line (bfloat16 on a CPU without native bfloat16), if it applies."""
    message = slow_dtype_warning(dtype, device, cpu_has_fast_bf16())
    if message:
        print(f"WARNING: {message}", file=sys.stderr)


def saved_layer_count(model_dir: Path) -> LayerCount:
    """Decoder layer count from a saved model's config.json (no weights loaded); it knows ``model_dir``, so
    ``params.prune.resolve_n_drop`` can derive a budget target's k from the folder's parameter counts."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"{model_dir}: no saved model; run `dvc repro prepare_model` first")
    try:
        config = json.loads(path.read_text())  # the saved model's own config.json
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise explain_corrupt(CorruptModelError(path, f"not valid JSON: {err}")) from None
    config = config.get("text_config", config)
    return LayerCount(int(config["num_hidden_layers"]), model_dir)
