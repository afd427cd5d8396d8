"""A tiny project workspace (params + tiny model) for running the stages end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_llama

ROOT = Path(__file__).resolve().parents[2]


def tiny_params(model_dir: Path) -> dict:
    """The default params.yaml shrunk to seconds: 6 layers, 18 masks, a handful of windows and items."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"].update(model=str(model_dir), dtype="float32", device="cpu", threads=1)
    params["prepare_data"].update(seq_len=32, calibration_windows=4, validation_windows=2, eval_windows=3)
    params["prepare_data"].update(repair_windows=8)
    params["repair"].update(method="linear+lora", lora_steps=4, lora_batch_size=2, checkpoint_every=2)
    params["sample_masks"].update(strata=[5, 4, 3], n_masks=18)
    params["fit_surrogate"].update(epochs=20, batch_size=8)
    params["estimate_shapley"].update(n_samples=600)
    params["select"].update(budget=16, rounds=2)
    params["prune"].update(n_drop=2, ratio=None)
    params["evaluate"].update(tasks=["piqa", "winogrande"], n_items=4, batch_size=8)
    methods = ["select", "shapley", "block_influence", "sleb", "random"]
    params["compare"].update(methods=methods, ratios=[0.34], n_items=4)
    return params


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smol_tokenizer) -> Path:
    out = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama().save_pretrained(out)
    smol_tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def workspace(tmp_path, tiny_model_dir) -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_model_dir), sort_keys=False))
    return tmp_path


@pytest.fixture(scope="session")
def prefect_api() -> str:
    """One temporary Prefect server for every stage test of the run; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()
