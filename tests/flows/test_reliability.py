"""Crashes, reruns and damaged files on the tiny pipeline: evaluate resumes, fit_surrogate reruns to the same
bytes, a corrupt model file is one line naming the fix, and the pruned checkpoint reloads in a fresh process.

Stages killed with SIGKILL run as real subprocesses (fault injection through ``SHAPPRUNE_FAULT``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from flows.prune import prune
from shapprune.models import load_model
from shapprune.surgery import keep_layers
from tests.conftest import SMOL_GGUF, smol_dir
from tests.flows.conftest import update_params
from tests.flows.stage_process import run_stage

IDS = torch.randint(0, 49152, (2, 24), generator=torch.Generator().manual_seed(3))  # [b, T]


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline, tmp_path_factory):
    """A copy of the shared tiny run, pruned again by ``prune.method: shapley`` (estimate_shapley's table
    with its boundary check, where the shared run prunes select's choice); only ``prune`` reruns."""
    root = tiny_pipeline.copy(tmp_path_factory.mktemp("reliability"))
    update_params(root, "prune", method="shapley")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHAPPRUNE_TRACKING", "off")
        info = prune(root=str(root))
    shapley = pd.read_csv(root / "data" / "shapley" / "shapley.csv")
    lowest = shapley.sort_values(["shapley", "layer"])["layer"].head(2).tolist()
    assert info["method"] == "paper" and info["dropped_layers"] == sorted(lowest)  # the table's lowest two
    return root


def _in_memory_pruned_logits(root) -> tuple[np.ndarray, int]:
    """What ``prune`` does before saving: data/model with only the recorded kept layers; its logits on IDS."""
    kept = json.loads((root / "data" / "pruned" / "pruning.json").read_text())["kept_layers"]
    model, _ = load_model(str(root / "data" / "model"))
    keep_layers(model, [i in kept for i in range(model.config.num_hidden_layers)])
    with torch.inference_mode():
        return model(input_ids=IDS).logits.float().numpy(), model.config.num_hidden_layers


def _without_timings(info: dict) -> dict:
    out = {k: v for k, v in info.items() if k not in ("tokens_per_s", "n_parts_this_run")}
    out["zero_shot"] = {t: {k: v for k, v in r.items() if k != "seconds"} for t, r in info["zero_shot"].items()}
    return out


def test_evaluate_killed_mid_stage_resumes_without_recomputing_finished_parts(tiny_pipeline, tmp_path):
    reference = tiny_pipeline.results["evaluate@full"]
    root = tiny_pipeline.copy(tmp_path / "ws")
    metrics = root / "data" / "metrics" / "eval_full.json"
    work = root / "data" / ".evaluate_work"
    assert reference["n_parts_this_run"] == 5  # 3 corpora + 2 tasks
    assert not work.exists() or not any(work.iterdir())  # a finished run leaves no checkpoints
    metrics.unlink()

    code, log = run_stage(root, "evaluate", "--which", "full", SHAPPRUNE_FAULT="evaluate:part:4")
    assert code == -signal.SIGKILL, log[-2000:]
    assert not metrics.exists()
    [folder] = work.iterdir()
    assert folder.name.startswith("full-")
    assert sorted(p.name for p in folder.iterdir()) == [
        "ppl-news.json", "ppl-web.json", "ppl-wiki.json", "task-piqa.json",
    ]  # fmt: skip
    finished = {p.stem: json.loads(p.read_text()) for p in folder.iterdir()}

    code, log = run_stage(root, "evaluate", "--which", "full")
    assert code == 0, log[-2000:]
    assert "resuming: 4 of 5 parts already evaluated (ppl-wiki, ppl-news, ppl-web, task-piqa); 1 to go" in log
    resumed = json.loads(metrics.read_text())
    assert resumed["n_parts_this_run"] == 1  # only winogrande was computed
    # finished parts were read back, not recomputed: their timings are the killed run's
    assert resumed["zero_shot"]["piqa"]["seconds"] == finished["task-piqa"]["seconds"]
    ppl_parts = [finished[f"ppl-{role}"] for role in ("wiki", "news", "web")]
    tps = sum(r["tokens"] for r in ppl_parts) / sum(r["seconds"] for r in ppl_parts)
    assert math.isclose(resumed["tokens_per_s"], tps, rel_tol=1e-12)
    assert _without_timings(resumed) == _without_timings(reference)  # equal to an uninterrupted run
    assert not any(work.iterdir())


def test_fit_surrogate_killed_mid_training_reruns_to_identical_bytes(tiny_pipeline, tmp_path):
    root = tiny_pipeline.copy(tmp_path / "ws", "data/model", "data/scores.parquet", "data/surrogate")
    surrogate = root / "data" / "surrogate"
    expected = {p.name: p.read_bytes() for p in surrogate.iterdir()}
    shutil.rmtree(surrogate)

    code, log = run_stage(root, "fit_surrogate", SHAPPRUNE_FAULT="fit_surrogate:epoch:10")  # of 20 epochs
    assert code == -signal.SIGKILL, log[-2000:]
    assert not surrogate.exists()  # nothing half-written

    code, log = run_stage(root, "fit_surrogate")
    assert code == 0, log[-2000:]
    assert {p.name: p.read_bytes() for p in surrogate.iterdir()} == expected


FRESH = textwrap.dedent(
    """
    import sys
    import numpy as np, torch
    from transformers import AutoModelForCausalLM
    model, info = AutoModelForCausalLM.from_pretrained(sys.argv[1], output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    with torch.inference_mode():
        logits = model.eval()(input_ids=torch.from_numpy(np.load(sys.argv[2]))).logits
    np.save(sys.argv[3], logits.float().numpy())
    print(model.config.num_hidden_layers, len(model.model.layers), model.dtype)
    """
)


def test_pruned_checkpoint_reloads_in_a_fresh_process_with_the_same_logits(pipeline, tmp_path):
    root = pipeline
    in_memory, n_layers = _in_memory_pruned_logits(root)
    np.save(tmp_path / "ids.npy", IDS.numpy())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    args = [str(root / "data" / "pruned"), str(tmp_path / "ids.npy"), str(tmp_path / "out.npy")]
    # cwd outside the repository: plain transformers, no project code on the path
    done = subprocess.run(
        [sys.executable, "-c", FRESH, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["4", "4", "torch.float32"] and n_layers == 4
    fresh = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(fresh, in_memory, rtol=1e-5, atol=1e-5)


def _errors(log: str) -> list[str]:
    """The stage's own error lines (Prefect's shutdown messages may follow them)."""
    return [line for line in log.splitlines() if line.startswith("error:")]


def test_a_corrupt_pruned_checkpoint_stops_evaluate_with_one_line(pipeline, tmp_path):
    root = pipeline
    copy = tmp_path / "ws"
    copy.mkdir()
    shutil.copy(root / "params.yaml", copy / "params.yaml")
    shutil.copytree(root / "data", copy / "data", ignore=shutil.ignore_patterns(".locks"))
    weights = copy / "data" / "pruned" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    code, log = run_stage(copy, "evaluate", "--which", "pruned")
    assert code == 2, log[-2000:]
    [line] = _errors(log)
    assert line.startswith(f"error: {weights} is corrupt (") and line.endswith("; rerun `dvc repro -f prune`")


def test_an_lm_eval_task_without_its_data_stops_evaluate_with_one_line_before_any_work(tiny_pipeline, tmp_path):
    root = tiny_pipeline.copy(tmp_path / "ws", "data/model", "data/windows")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["lm_eval_tasks"] = ["lambada_openai"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    code, log = run_stage(root, "evaluate", "--which", "full", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    assert code == 2, log[-2000:]
    [line] = _errors(log)
    assert line.startswith("error: evaluate.lm_eval_tasks: lm-eval cannot load the data of 'lambada_openai' offline")
    assert line.endswith("run with internet and HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0, or drop it from the list")
    assert not (root / "data" / ".evaluate_work").exists()  # refused before the model was even loaded


def test_a_truncated_gguf_stops_prepare_model_with_one_line_and_no_retry(tiny_pipeline, tmp_path):
    root = tiny_pipeline.root
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes((smol_dir() / SMOL_GGUF).read_bytes()[:5000])
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["base"]["model"] = str(gguf)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    code, log = run_stage(tmp_path, "prepare_model")
    assert code == 2, log[-2000:]
    [line] = _errors(log)
    assert line.startswith(f"error: {gguf} is corrupt (truncated or damaged GGUF: ")
    assert line.endswith("download the file again or point base.model at another model")
    assert "Retry 1/1" not in log and not (tmp_path / "data" / "model").exists()


def test_a_surrogate_fitted_for_another_model_is_refused(tiny_pipeline, tmp_path):
    from shapprune.config import ConfigError
    from tasks.estimate_shapley import load_surrogate
    from tasks.shared.runtime import Stage

    root = tiny_pipeline.root
    other = shutil.copytree(yaml.safe_load((root / "params.yaml").read_text())["base"]["model"], tmp_path / "other")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["base"]["model"] = str(other)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(root / "data" / "surrogate", tmp_path / "data" / "surrogate")
    with pytest.raises(ConfigError, match=r"trained for .*, not .*other; rerun `dvc repro fit_surrogate`"):
        load_surrogate.fn(Stage.open("estimate_shapley", tmp_path))
