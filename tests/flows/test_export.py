"""The export stage on the tiny pipeline: the shipped folder, its card and its MLflow registry entry, each
loaded back in a fresh process as a user would, giving the logits of the repaired model in memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from shapprune.models import save_model
from tests.flows.conftest import ROOT, update_params

IDS = [[1, 520, 3091, 42, 7, 999, 12, 5]]


def fresh_process_logits(code: str, tmp_path, **env: str) -> np.ndarray:
    """Run ``code`` (which sets ``logits``, a tensor) in a new Python process; return what it computed."""
    out = tmp_path / "logits.npy"
    script = f"import numpy as np, torch\ntorch.set_num_threads(1)\nids = torch.tensor({IDS})\n"
    script += f"{textwrap.dedent(code)}\n"
    script += f"np.save({str(out)!r}, logits.float().numpy())\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": "/usr/bin:/bin", **env},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out)


def in_memory(model_dir) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """The fp32 state dict and logits of ``model_dir`` (the repaired model the evaluation measured)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model.state_dict(), model(torch.tensor(IDS)).logits.numpy()


HF_FOLDER = """
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained({path!r}).eval()
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model(ids).logits
    """


def test_the_shipped_folder_is_bf16_with_a_card_and_gives_the_repaired_logits(tiny_pipeline, tmp_path):
    root = tiny_pipeline.root
    info = tiny_pipeline.results["export"]
    shipped = root / "data" / "export" / "model"
    config = json.loads((shipped / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["num_hidden_layers"] == 4
    assert {"model.safetensors", "tokenizer.json", "generation_config.json", "README.md"} <= set(info["files_bytes"])
    source_mb = sum(f.stat().st_size for f in (root / "data" / "repaired").glob("*.safetensors")) / 2**20
    shipped_mb = (shipped / "model.safetensors").stat().st_size / 2**20
    assert 0.45 < shipped_mb / source_mb < 0.55  # bf16: half the fp32 weights

    state, reference = in_memory(root / "data" / "repaired")
    saved = load_file(shipped / "model.safetensors")
    for name, tensor in saved.items():  # the fp32 weights rounded to bf16, nothing else
        assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, state[name].to(torch.bfloat16)), name
    logits = fresh_process_logits(HF_FOLDER.format(path=str(shipped)), tmp_path)
    assert np.abs(logits - reference).max() < 0.05 * np.abs(reference).max()  # bf16 arithmetic, not other weights

    pruning = tiny_pipeline.results["prune"]
    card = (shipped / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == "tiny/tiny-llama" and "repair-linear" in front["tags"]
    removed = ", ".join(map(str, pruning["dropped_layers"]))
    assert f"Removed layers** (0-based, of the source): {removed}\n" in card
    assert info["dropped_layers"] == pruning["dropped_layers"]
    spent = pruning["llm_evaluations"]  # select: the scored masks plus select's own evaluations
    scored = tiny_pipeline.results["score_masks"]["n_masks"]  # the rounds' design masks and proposals
    assert spent == scored + tiny_pipeline.results["select"]["n_evaluations"] and scored <= 18
    assert f"choosing the layers**: {spent}" in card
    repair = tiny_pipeline.results["repair"]  # the card names the text the repair learnt from
    assert repair["text"] == "wiki_extracts 0.5 + coqa_stories 0.5"  # prepare_data.repair_mix, the default
    assert f"on {repair['windows']} windows of {repair['text']} text)" in card
    check = info["checks"]
    assert check["windows"] == 2 and abs(check["hf"]["nll"] - check["fp32"]["nll"]) < 0.05  # bf16 rounding only


def test_the_registered_model_loads_from_the_registry_in_a_fresh_process(tiny_pipeline, tmp_path):
    root = tiny_pipeline.root
    registered = tiny_pipeline.results["export"]["registered"]
    assert registered == {"name": "shapprune-tiny-llama", "version": "1", "uri": "models:/shapprune-tiny-llama/1"}
    logits = fresh_process_logits(
        """
        import mlflow
        components = mlflow.transformers.load_model("models:/shapprune-tiny-llama/1", return_type="components")
        model = components["model"].eval()
        assert model.dtype == torch.bfloat16, model.dtype
        with torch.no_grad():
            logits = model(ids).logits
        """,
        tmp_path,
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
    )
    shipped = root / "data" / "export" / "model"
    assert np.array_equal(logits, fresh_process_logits(HF_FOLDER.format(path=str(shipped)), tmp_path))

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    version = client.get_model_version("shapprune-tiny-llama", "1")
    assert version.tags["method"] == "select" and version.tags["k"] == "2" and version.tags["repair"] == "linear"
    assert set(version.tags) >= {"ppl_wiki", "ppl_news", "ppl_web"}
    run = client.get_run(version.run_id)
    assert run.data.tags["dvc_stage"] == "export"


def test_over_the_size_limit_only_a_reference_is_logged(tiny_pipeline, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from flows.export import export

    workspace = tiny_pipeline.copy(tmp_path / "ws", "data")
    update_params(workspace, "export", mlflow_max_mb=0.5, registered_name="too-big")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("SHAPPRUNE_PIPELINE_ID", "size-limit")
    info = export(root=str(workspace))
    assert info["registered"] is None and info["hf_mb"] > 0.5
    client = MlflowClient(store)
    assert not client.search_registered_models()
    run = client.search_runs([client.get_experiment_by_name("shapprune").experiment_id], "tags.dvc_stage = 'export'")[0]
    assert "not registered" in run.data.tags["registry"]
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/weights.json" in listed and "model/model.safetensors" not in listed


GGUF_FILE = """
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained({folder!r}, gguf_file="model.gguf", dtype=torch.float32).eval()
    assert model.config.num_hidden_layers == 4
    with torch.no_grad():
        logits = model(ids).logits
    """


def test_a_source_that_is_no_gguf_gets_a_converted_one(tiny_pipeline, tmp_path):
    """The tiny LLaMA (a save_pretrained folder) is written as a new GGUF, read back in a fresh process."""
    root = tiny_pipeline.root
    info = tiny_pipeline.results["export"]
    assert info["gguf"]["made"] == "converted (Q8_0)" and info["gguf"]["n_blocks"] == 4
    written = info["gguf"]["requantised"]
    assert written["blk.0.ffn_down.weight"] == "Q8_0" and written["blk.0.attn_q.weight"] == "F16"  # 16-wide rows
    _, reference = in_memory(root / "data" / "repaired")
    logits = fresh_process_logits(GGUF_FILE.format(folder=str(root / "data" / "export")), tmp_path)
    assert np.abs(logits - reference).max() < 0.05 * np.abs(reference).max()  # F16 and Q8_0 rounding only
    assert abs(info["checks"]["gguf"]["nll"] - info["checks"]["fp32"]["nll"]) < 0.05


def test_a_gguf_that_cannot_be_written_is_skipped_or_one_line_naming_the_fix(tiny_pipeline, tmp_path):
    from shapprune.config import ConfigError
    from tasks.export import gguf_plan

    model, repaired = tiny_pipeline.params["base"]["model"], tiny_pipeline.root / "data" / "repaired"
    assert gguf_plan(model, "auto", "Q8_0", repaired).qtype == "Q8_0"
    assert gguf_plan(model, "false", "F16", repaired) is None
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert gguf_plan(model, "auto", "Q8_0", tmp_path) is None
    with pytest.raises(ConfigError) as err:  # raised before anything is written (stage_main: exit 2, one line)
        gguf_plan(model, "true", "Q8_0", tmp_path)
    assert str(err.value).startswith("export.gguf: true, but base.model")
    assert "model_type 'gpt2'" in str(err.value) and "convert_hf_to_gguf" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def gguf_workspace(tiny_pipeline, tmp_path_factory):
    """A project whose base.model is a 3-block cut of the real default GGUF (made by the exporter itself) and
    whose repaired model is that one without its middle block, its down-projection changed as a repair would."""
    from shapprune.export.gguf import export_gguf
    from shapprune.models import load_model
    from shapprune.surgery import keep_layers
    from tests.conftest import SMOL_GGUF, smol_dir

    root = tmp_path_factory.mktemp("gguf-export")
    source = export_gguf(smol_dir() / SMOL_GGUF, root / "source" / "small.gguf", [0, 19, 29], None, (9, 3)).path
    workspace = tiny_pipeline.copy(root / "ws", "data/windows", "data/metrics")
    update_params(workspace, "base", model=str(source))
    model, tokenizer = load_model(str(source))
    keep_layers(model, np.array([True, False, True]))
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(1.05)
    save_model(model, tokenizer, workspace / "data" / "repaired")
    repair = {"method": "linear", "linear": {}, "parameters_added": 0}  # what the repair stage records
    (workspace / "data" / "repaired" / "repair.json").write_text(json.dumps(repair))
    (workspace / "data" / "pruned").mkdir(parents=True)
    pruning = {"method": "sleb", "n_layers_before": 3, "n_dropped": 1, "dropped_layers": [1], "kept_layers": [0, 2]}
    pruning |= {"parameters_before": 1, "parameters_after": 1, "llm_evaluations": 5}
    (workspace / "data" / "pruned" / "pruning.json").write_text(json.dumps(pruning))
    return workspace


def test_a_gguf_source_gets_a_gguf_that_keeps_its_quantisation(gguf_workspace, monkeypatch):
    from flows.export import export

    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    info = export(root=str(gguf_workspace))
    shipped = gguf_workspace / "data" / "export" / "model.gguf"
    # the changed tensor in export.gguf_changed (Q8_0), every other one copied in the source's Q4_1
    assert info["gguf"]["n_blocks"] == 2 and info["gguf"]["requantised"] == {"blk.0.ffn_down.weight": "Q8_0"}
    assert info["gguf"]["copied"] == 1 + 2 * 9 + 1 - 1 and info["files_bytes"]["model.gguf"] == shipped.stat().st_size
    check = info["checks"]
    assert abs(check["gguf"]["nll"] - check["fp32"]["nll"]) < 0.05  # Q8_0 of one changed tensor, nothing else
    assert abs(check["hf"]["nll"] - check["fp32"]["nll"]) < 0.05
    card = (gguf_workspace / "data" / "export" / "model" / "README.md").read_text()
    assert (
        "license: apache-2.0" in card
        and "| model.gguf |" in card
        and "**Removed layers** (0-based, of the source): 1\n" in card
    )
