"""All stages in order on a tiny random LLaMA, in-process under prefect_test_harness, tracked in MLflow."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from transformers import AutoModelForCausalLM

from flows.compare import compare
from flows.estimate_shapley import estimate_shapley
from flows.evaluate import evaluate
from flows.fit_surrogate import fit_surrogate
from flows.prepare_data import prepare_data
from flows.prepare_model import prepare_model
from flows.prune import prune
from flows.repair import repair
from flows.report import report
from flows.sample_masks import sample_masks
from flows.score_masks import score_masks
from flows.select import select


def test_all_stages_produce_their_artifacts(workspace, prefect_api, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workspace / 'mlflow.db'}")
    monkeypatch.setenv("SHAPPRUNE_PIPELINE_ID", "test-pipeline")
    root = str(workspace)
    assert prepare_model(root=root)["n_layers"] == 6
    prepare_data(root=root)
    sample_masks(root=root)
    score_masks(root=root)
    fit_surrogate(root=root)
    estimate_shapley(root=root)
    chosen = select(root=root)
    pruning = prune(root=root)
    repaired = repair(root=root)
    evaluate(which="full", root=root)
    evaluate(which="pruned", root=root)
    evaluate(which="repaired", root=root)
    compared = compare(root=root)
    metrics = report(root=root)

    data = workspace / "data"
    # repair: the pruned layers, linearly repaired then LoRA-healed, with exactly the pruned model's parameters
    assert repaired["method"] == "linear+lora" and repaired["n_layers"] == 4 and repaired["parameters_added"] == 0
    assert repaired["parameters"] == pruning["parameters_after"] and repaired["lora"]["steps"] == 4
    assert len(pd.read_parquet(data / "windows" / "repair.parquet")) == 8
    reloaded = AutoModelForCausalLM.from_pretrained(data / "repaired")
    assert len(reloaded.model.layers) == 4 and not any("lora" in n for n, _ in reloaded.named_parameters())
    assert json.loads((data / "metrics" / "eval_repaired.json").read_text())["n_layers"] == 4
    windows = pd.read_parquet(data / "windows" / "calibration.parquet")
    assert len(windows) == 4 and all(len(x) == 32 for x in windows["input_ids"])
    scores = pd.read_parquet(data / "scores.parquet")
    masks = pd.read_parquet(data / "masks.parquet")
    assert len(scores) == len(masks) == 18 and scores["bits"].tolist() == masks["bits"].tolist()
    assert scores["n_kept"].value_counts().to_dict() == {5: 6, 4: 6, 3: 6}  # the paper's design: equal strata
    assert {"bits", "nll_sum", "n_tokens", "utility", "finite"} <= set(scores.columns)
    assert (scores["n_tokens"] == 4 * 31).all()
    assert (data / "surrogate" / "surrogate.safetensors").is_file()
    shapley = pd.read_csv(data / "shapley" / "shapley.csv")
    expected = {"shapley", "shapley_se", "ci_low", "ci_high", "rank", "dropped", "mlp_shapley", "mlp_semivalue"}
    assert len(shapley) == 6 and expected <= set(shapley.columns)
    assert (shapley["ci_low"] < shapley["shapley"]).all() and (shapley["shapley"] < shapley["ci_high"]).all()
    estimate = json.loads((data / "shapley" / "shapley.json").read_text())
    assert estimate["estimator"] == "paper" and estimate["n_evaluations"] == len(scores)
    assert estimate["boundary"]["n_drop"] == 2 and len(estimate["boundary"]["dropped"]) == 2
    selection = json.loads((data / "select" / "select.json").read_text())
    assert selection["n_drops"] == [2] and 0 < selection["n_evaluations"] <= 16
    assert pruning["method"] == "select" and pruning["dropped_layers"] == chosen["chosen"][2]
    assert selection["chosen"]["2"]["dropped"] == chosen["chosen"][2]
    lowest = shapley.sort_values(["shapley", "layer"])["layer"].head(2).tolist()
    assert selection["chosen"]["2"]["ranking"]["dropped"] == sorted(lowest)  # the ranking's choice, verified
    candidates = pd.read_parquet(data / "select" / "candidates.parquet")
    assert candidates["chosen"].sum() == 1 and (candidates["n_drop"] == 2).all()
    assert candidates["verified"].sum() == selection["n_validation_evaluations"]  # 2 validation windows exist

    pruned = AutoModelForCausalLM.from_pretrained(data / "pruned")
    assert pruned.config.num_hidden_layers == 4 and len(pruned.model.layers) == 4
    assert metrics["n_dropped"] == 2
    assert json.loads((workspace / "metrics.json").read_text())["pruned"]["ppl"].keys() == {"wiki", "news", "web"}
    summary = (workspace / "reports" / "summary.md").read_text()
    assert "Dropped layers" in summary and "## Subset search (select)" in summary

    # compare: every method at k = round(0.34 * 6) = 2, the same held-out windows as evaluate
    table = pd.read_csv(data / "compare" / "compare.csv")
    assert compared["rows"] == len(table) == 1 + 5
    assert table.method.tolist() == ["full", "select", "shapley", "block_influence", "sleb", "random"]
    row = table.set_index("method")
    assert row.loc["select", "dropped"] == " ".join(map(str, chosen["chosen"][2]))
    assert row.loc["shapley", "dropped"] == " ".join(map(str, sorted(lowest)))
    full_eval = json.loads((data / "metrics" / "eval_full.json").read_text())
    for corpus, ppl in full_eval["ppl"].items():  # the full model's row matches the evaluate stage
        assert row.loc["full", f"ppl_{corpus}"] == pytest.approx(ppl, rel=1e-5)
    pruned_eval = json.loads((data / "metrics" / "eval_pruned.json").read_text())
    for corpus, ppl in pruned_eval["ppl"].items():  # select's variant is the pruned model saved by prune
        assert row.loc["select", f"ppl_{corpus}"] == pytest.approx(ppl, rel=1e-4)
    assert (table.params_kept < 1).sum() == 5 and table.mean_acc.between(0, 1).all()
    assert "| select | 2 |" in (workspace / "reports" / "compare.md").read_text()
    assert "Layer-pruning methods compared" in summary
    long = pd.read_csv(workspace / "plots" / "compare" / "ppl.csv")
    assert len(long) == 5 * 3 * 2  # method x corpus x (0, 2 removed)
    ranks = pd.read_csv(workspace / "plots" / "compare" / "ranks.csv")
    assert set(ranks.method) == {"shapley", "block_influence", "sleb", "random"} and len(ranks) == 4 * 6
    assert json.loads((workspace / "metrics.json").read_text())["select"]["select_k2_calibration"] > 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("shapprune").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert {r.data.tags["dvc_stage"] for r in children} == {
        "prepare_model",
        "prepare_data",
        "sample_masks",
        "score_masks",
        "fit_surrogate",
        "estimate_shapley",
        "select",
        "prune",
        "repair",
        "evaluate@full",
        "evaluate@pruned",
        "evaluate@repaired",
        "compare",
        "report",
    }
    compare_run = next(r for r in children if r.data.tags["dvc_stage"] == "compare").info.run_id
    cells = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == compare_run]  # one run per (method, k)
    assert len(children) + len(cells) + 1 == len(runs)
    assert sorted(r.data.params["method"] for r in cells) == sorted(table.method[1:])
    sleb_cell = next(r for r in cells if r.data.params["method"] == "sleb")
    assert sleb_cell.data.params["n_drop"] == "2"
    assert sleb_cell.data.params["dropped_layers"] == row.loc["sleb", "dropped"]
    assert sleb_cell.data.metrics["ppl_wiki"] == pytest.approx(row.loc["sleb", "ppl_wiki"])
    assert np.isfinite(parents[0].data.metrics["pruned_ppl_wiki"])

    # select searches several k when asked; prune refuses a k it did not search; other methods skip the search
    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["select"]["n_drops"] = [1, 2]
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert sorted(select(root=root)["chosen"]) == [1, 2]
    params["prune"]["n_drop"] = 3
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(Exception, match=r"select searched k in \[1, 2\] but prune asks for 3; set select.n_drops"):
        prune(root=root)
    params["prune"]["method"] = "sleb"
    params["compare"]["methods"] = ["sleb", "random"]
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert select(root=root) == {"method": "sleb"}
    assert json.loads((data / "select" / "select.json").read_text())["method"] == "sleb"

    # another estimator draws its own design, scores it and replays on it
    params["estimate_shapley"]["estimator"] = "surrogate_cv"
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in (sample_masks, score_masks, fit_surrogate, estimate_shapley):
        stage(root=root)
    scores = pd.read_parquet(data / "scores.parquet")
    assert 10 <= len(scores) <= 18 and set(scores["n_kept"]) == set(range(6))  # every size, the empty one too
    estimate = json.loads((data / "shapley" / "shapley.json").read_text())
    assert estimate["estimator"] == "surrogate_cv" and estimate["n_evaluations"] == len(scores)
