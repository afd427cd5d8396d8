"""Damaged files in data/model and data/pruned: the error names the file and the DVC stage that rebuilds it."""

from __future__ import annotations

import shutil

import pytest

from shapprune.config import ConfigError
from shapprune.integrity import CorruptModelError
from tasks.prepare_model import _retry_unless_bad_input
from tasks.shared.model import explain_corrupt, load_stage_model, saved_layer_count
from tests.conftest import project_params, tiny_llama


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved")
    tiny_llama(n_layers=2).save_pretrained(out)
    return out


@pytest.mark.parametrize(("folder", "stage"), [("model", "prepare_model"), ("pruned", "prune")])
def test_truncated_weights_in_data_name_the_stage_to_rerun(saved, tmp_path, monkeypatch, folder, stage):
    monkeypatch.chdir(tmp_path)
    model_dir = shutil.copytree(saved, tmp_path / "data" / folder)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ConfigError) as err:
        load_stage_model.fn(model_dir, project_params())
    message = str(err.value)
    assert message.startswith(f"data/{folder}/model.safetensors is corrupt (")
    assert message.endswith(f"; rerun `dvc repro -f {stage}`") and len(message.splitlines()) == 1


def test_a_corrupt_config_json_is_named_too(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_dir = shutil.copytree(saved, tmp_path / "data" / "model")
    (model_dir / "config.json").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ConfigError, match=r"^data/model/config\.json is corrupt \(not valid JSON.*prepare_model`$"):
        saved_layer_count(model_dir)


def test_files_outside_data_keep_the_generic_fix(tmp_path):
    err = explain_corrupt(CorruptModelError(tmp_path / "elsewhere" / "model.safetensors", "why", "save it again"))
    assert str(err) == f"{tmp_path / 'elsewhere' / 'model.safetensors'} is corrupt (why); save it again"


class _State:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self):
        raise self.exc


def test_model_download_retries_only_on_errors_a_retry_can_fix():
    assert _retry_unless_bad_input(None, None, _State(ConnectionError("reset"))) is True
    assert _retry_unless_bad_input(None, None, _State(CorruptModelError("x.gguf", "truncated", "fix"))) is False
    assert _retry_unless_bad_input(None, None, _State(ValueError("base.model: package 'x' is not installed"))) is False


@pytest.mark.parametrize(
    ("evaluate_dtype", "expected"),
    [("float32", "torch.float32"), ("float64", "torch.float64"), ("base", "torch.bfloat16")],
)
def test_the_evaluation_dtype_overrides_base_dtype(saved, smol_tokenizer, tmp_path, evaluate_dtype, expected):
    """evaluate.dtype: float32 / float64 score in that precision whatever base.dtype; base keeps base.dtype."""
    saved = shutil.copytree(saved, tmp_path / "model")
    smol_tokenizer.save_pretrained(saved)
    params = project_params({"base": {"dtype": "bfloat16", "device": "cpu"}, "evaluate": {"dtype": evaluate_dtype}})
    model, _, _ = load_stage_model.fn(saved, params, params.evaluate.dtype)
    assert str(next(model.parameters()).dtype) == expected
    model, _, _ = load_stage_model.fn(saved, params)  # every other stage: base.dtype
    assert str(next(model.parameters()).dtype) == "torch.bfloat16"
