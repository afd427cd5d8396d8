"""Prefect tasks around model loading and saving."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError, Params
from shapprune.integrity import CorruptModelError
from shapprune.models import load_model, parameter_count, resolve_device, resolve_dtype, save_model
from shapprune.surgery import num_layers

REBUILT_BY = {"model": "prepare_model", "pruned": "prune"}  # data/<dir> -> the DVC stage that writes it


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


def _retry_unless_bad_input(task, task_run, state) -> bool:
    """Retry a failed model download, but not bad input or a damaged file (retrying cannot fix those)."""
    try:
        state.result()
    except (ConfigError, ValueError):
        return False
    except Exception:
        return True
    return True


@task(
    name="materialise-model",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_unless_bad_input,
)
def materialise_model(spec: str, out_dir: Path) -> dict:
    """Load ``base.model`` (hub id, directory or GGUF) in fp32 and save a clean safetensors copy."""
    model, tokenizer = load_model(spec)
    save_model(model, tokenizer, out_dir)
    return {"n_layers": num_layers(model), "parameters": parameter_count(model), "model_type": model.config.model_type}


@task(name="load-model", cache_policy=NO_CACHE)
def load_stage_model(model_dir: Path, params: Params) -> tuple[object, object, str]:
    """Load a saved model directory with the device and dtype from ``base``; returns (model, tokenizer, device)."""
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir}: no saved model; run `dvc repro prepare_model` first")
    device = resolve_device(params.base.device)
    dtype = resolve_dtype(params.base.dtype, device)
    try:
        model, tokenizer = load_model(str(model_dir), dtype=dtype, device=device)
    except CorruptModelError as err:
        raise explain_corrupt(err) from None
    return model, tokenizer, device


def saved_layer_count(model_dir: Path) -> int:
    """Decoder layer count from a saved model's config.json (no weights loaded)."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"{model_dir}: no saved model; run `dvc repro prepare_model` first")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise explain_corrupt(CorruptModelError(path, f"not valid JSON: {err}")) from None
    config = config.get("text_config", config)
    return int(config["num_hidden_layers"])
