"""Prefect task of the ``prepare_model`` stage: resolve ``base.model`` and save a clean safetensors copy."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError
from shapprune.models import load_model, parameter_count, save_model
from shapprune.surgery import num_layers


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
def materialise_model(spec: str, out_dir: Path, revision: str | None = None) -> dict:
    """Load ``base.model`` (hub id at ``revision``, directory or GGUF) in fp32 and save a clean safetensors copy."""
    model, tokenizer = load_model(spec, revision=revision)
    save_model(model, tokenizer, out_dir)
    return {"n_layers": num_layers(model), "parameters": parameter_count(model), "model_type": model.config.model_type}
