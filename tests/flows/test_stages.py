"""All stages in order on a tiny random LLaMA, in-process under prefect_test_harness, tracked in MLflow
(the session's shared run, ``tiny_pipeline``), then params changed on copies of it and single stages rerun."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from transformers import AutoModelForCausalLM

from flows.estimate_shapley import estimate_shapley
from flows.fit_surrogate import fit_surrogate
from flows.prune import prune
from flows.sample_masks import sample_masks
from flows.score_masks import score_masks
from flows.select import select
from shapprune.config import ConfigError
from tests.flows.conftest import update_params


def _artifacts(flow_run_id: str, key: str) -> list:
    """The Prefect artifacts with ``key`` of one flow run (the session's test server)."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    async def read() -> list:
        async with get_client() as client:
            where = ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(any_=[key])
            )
            return await client.read_artifacts(artifact_filter=where)

    return asyncio.run(read())


def test_all_stages_produce_their_artifacts(tiny_pipeline):
    workspace, results = tiny_pipeline.root, tiny_pipeline.results
    assert results["prepare_model"]["n_layers"] == 6
    chosen, pruning, repaired = results["select"], results["prune"], results["repair"]
    compared, metrics = results["compare"], results["report"]
    assert results["score_layers"] == {"method": "select"}  # select's choice: no baseline scored

    data = workspace / "data"
    # repair: the pruned layers, linearly repaired, with exactly the pruned model's parameters
    assert repaired["method"] == "linear" and repaired["n_layers"] == 4 and repaired["parameters_added"] == 0
    assert repaired["parameters"] == pruning["parameters_after"] and "lora" not in repaired
    runs = repaired["linear"]["repaired"] + repaired["linear"]["skipped"]
    assert sum(r["stop"] - r["start"] for r in runs) == 2  # every dropped layer is in a run, repaired or not
    assert len(pd.read_parquet(data / "windows" / "repair.parquet")) == 8
    reloaded = AutoModelForCausalLM.from_pretrained(data / "repaired")
    assert len(reloaded.model.layers) == 4 and not any("lora" in n for n, _ in reloaded.named_parameters())
    assert json.loads((data / "metrics" / "eval_repaired.json").read_text())["n_layers"] == 4
    windows = pd.read_parquet(data / "windows" / "calibration.parquet")
    assert len(windows) == 4 and all(len(x) == 32 for x in windows["input_ids"])
    scores = pd.read_parquet(data / "scores.parquet")
    masks = pd.read_parquet(data / "masks.parquet")
    assert len(masks) == 18 and len(scores) <= 18  # the rounds (score_masks.stop: decision) never pass the cap
    design = scores[scores["source"] == "design"]
    order = {b: i for i, b in enumerate(masks["bits"])}
    positions = [order[b] for b in design["bits"]]
    assert positions == sorted(positions)  # the design's order
    # a prefix of the design (a mask a round proposed first is not scored again when the design reaches it)
    assert set(masks["bits"].tolist()[: max(positions) + 1]) <= set(scores["bits"])
    assert set(scores["source"]) <= {"design", "proposal"} and len(set(scores["bits"])) == len(scores)
    rounds = json.loads((data / "metrics" / "score_masks.json").read_text())
    assert rounds["stop"] == "decision" and rounds["stop_reason"] in ("resolved", "cap")
    assert rounds["n_design"] == len(design) and rounds["n_masks"] == len(scores)
    assert {"bits", "nll_sum", "n_tokens", "utility", "finite"} <= set(scores.columns)
    assert (scores["n_tokens"] == 4 * 31).all()
    assert (data / "surrogate" / "surrogate.safetensors").is_file()
    shapley = pd.read_csv(data / "shapley" / "shapley.csv")
    expected = {"shapley", "shapley_se", "ci_low", "ci_high", "rank", "dropped", "mlp_shapley", "mlp_semivalue"}
    assert len(shapley) == 6 and expected <= set(shapley.columns)
    assert (shapley["ci_low"] < shapley["shapley"]).all() and (shapley["shapley"] < shapley["ci_high"]).all()
    estimate = json.loads((data / "shapley" / "shapley.json").read_text())
    assert estimate["estimator"] == "paper" and estimate["n_evaluations"] == len(design)
    assert estimate["n_llm_evaluations"] == len(scores) and estimate["stop_reason"] == rounds["stop_reason"]
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
    assert compared["rows"] == len(table) == 1 + 5 * 2  # every method as pruned and linearly repaired
    methods = ["select", "shapley", "block_influence", "sleb", "random"]
    assert table.method.tolist() == ["full", *methods, *methods]
    assert table.repair.tolist() == ["none"] * 6 + ["linear"] * 5
    row = table[table.repair == "none"].set_index("method")
    fixed = table[table.repair == "linear"].set_index("method")
    assert (fixed.dropped == row.dropped[1:]).all()
    assert row.loc["select", "dropped"] == " ".join(map(str, chosen["chosen"][2]))
    assert row.loc["shapley", "dropped"] == " ".join(map(str, sorted(lowest)))
    full_eval = json.loads((data / "metrics" / "eval_full.json").read_text())
    for corpus, ppl in full_eval["ppl"].items():  # the full model's row matches the evaluate stage
        assert row.loc["full", f"ppl_{corpus}"] == pytest.approx(ppl, rel=1e-5)
    pruned_eval = json.loads((data / "metrics" / "eval_pruned.json").read_text())
    for corpus, ppl in pruned_eval["ppl"].items():  # select's variant is the pruned model saved by prune
        assert row.loc["select", f"ppl_{corpus}"] == pytest.approx(ppl, rel=1e-4)
    repaired_eval = json.loads((data / "metrics" / "eval_repaired.json").read_text())
    for corpus, ppl in repaired_eval["ppl"].items():  # select's repaired variant is the model repair saved
        assert fixed.loc["select", f"ppl_{corpus}"] == pytest.approx(ppl, rel=1e-4)
    assert (table.params_kept < 1).sum() == 10 and table.mean_acc.between(0, 1).all()
    assert "## After the linear repair" in (workspace / "reports" / "compare.md").read_text()
    assert "| select | 2 |" in (workspace / "reports" / "compare.md").read_text()
    pairs = pd.read_csv(data / "compare" / "paired.csv")  # every other method against the best, per metric
    assert set(pairs.repair) == {"none", "linear"} and set(pairs.metric) == {*(f"ppl_{c}" for c in full_eval["ppl"]),
                                                                            "mean_acc"}  # fmt: skip
    assert (pairs.low <= pairs.estimate).all() and (pairs.estimate <= pairs.high).all()
    assert (pairs.groupby(["repair", "metric"]).size() == 4).all()  # 5 methods: 4 against the best each
    assert "## Which differences are real" in (workspace / "reports" / "compare.md").read_text()
    assert "Layer-pruning methods compared" in summary
    long = pd.read_csv(workspace / "plots" / "compare" / "ppl.csv")
    assert len(long) == 10 * 3 * 2  # (method, repair) x corpus x (0, 2 removed)
    assert set(long.method) == {*methods, *(f"{m}+linear" for m in methods)}
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
        "score_layers",
        "prune",
        "repair",
        "evaluate@full",
        "evaluate@pruned",
        "evaluate@repaired",
        "compare",
        "report",
        "export",
    }
    compare_run = next(r for r in children if r.data.tags["dvc_stage"] == "compare").info.run_id
    cells = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == compare_run]  # per (method, k, repair)
    assert len(children) + len(cells) + 1 == len(runs)
    assert sorted((r.data.params["method"], r.data.params["repair"]) for r in cells) == sorted(
        zip(table.method, table.repair)
    )  # the full model's row included: the baseline of MLflow's comparison
    for child in children:  # each stage's MLflow run names its Prefect flow run, and that flow run links back
        flow_run_id = child.data.tags["prefect.flow_run_id"]
        assert child.data.tags["prefect.flow_run_name"]
        [link] = _artifacts(flow_run_id, "mlflow-run")
        assert f"/#/experiments/{child.info.experiment_id}/runs/{child.info.run_id}" in link.data  # a markdown link
    full_cell = next(r for r in cells if r.data.params["method"] == "full")
    assert full_cell.info.run_name == "full model" and full_cell.data.params["n_drop"] == "0"
    sleb_cell = next(r for r in cells if r.data.params["method"] == "sleb" and r.data.params["repair"] == "none")
    assert sleb_cell.data.params["n_drop"] == "2"
    assert sleb_cell.data.params["dropped_layers"] == row.loc["sleb", "dropped"]
    assert sleb_cell.data.metrics["ppl_wiki"] == pytest.approx(row.loc["sleb", "ppl_wiki"])
    assert np.isfinite(parents[0].data.metrics["pruned_ppl_wiki"])


def test_select_searches_several_k_and_prune_refuses_one_it_did_not(tiny_pipeline, tmp_path, monkeypatch):
    """select searches several k when asked; prune refuses a k it did not search; other methods skip the search"""
    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    workspace = tiny_pipeline.copy(tmp_path / "ws")
    root, data = str(workspace), workspace / "data"
    update_params(workspace, "select", n_drops=[1, 2])
    assert sorted(select(root=root)["chosen"]) == [1, 2]
    update_params(workspace, "prune", n_drop=3)
    with pytest.raises(Exception, match=r"select searched k in \[1, 2\] but prune asks for 3; rerun `dvc repro"):
        prune(root=root)
    update_params(workspace, "prune", method="sleb")
    update_params(workspace, "compare", methods=["sleb", "random"])
    assert select(root=root) == {"method": "sleb"}
    assert json.loads((data / "select" / "select.json").read_text())["method"] == "sleb"


def test_budgeted_select_runs_on_the_llm_alone_within_its_budget(tiny_pipeline, tmp_path, monkeypatch):
    """select.strategy budgeted: no scored masks, surrogate or Shapley table needed; every evaluation counted,
    per k in evaluations and layer-token forwards; prune's cost is select's alone; reused scores are counted"""
    from flows.prune import prune

    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    workspace = tiny_pipeline.copy(tmp_path / "ws", "data/model", "data/windows")
    update_params(workspace, "select", strategy="budgeted", budget=9, n_drops=[1, 2], reuse_scores=True)
    data = workspace / "data"
    assert sorted(select(root=str(workspace))["chosen"]) == [1, 2]
    table = json.loads((data / "select" / "select.json").read_text())
    assert table["strategy"] == "budgeted" and table["design_evaluations"] == 0  # nothing scored to reuse
    assert 0 < table["n_evaluations"] <= 9 and table["n_validation_evaluations"] == 0
    assert table["validation_windows"] == 0 and table["validation_full_ppl"] is None  # no validation game built
    per_k = table["chosen"]
    assert sum(per_k[k]["evaluations"] for k in ("1", "2")) == table["n_evaluations"]
    tokens = table["tokens_per_evaluation"]
    assert tokens == 4 * 32  # the calibration windows
    for k, row in per_k.items():
        assert len(row["dropped"]) == int(k) and row["layer_token_forwards"] == row["kept_layers"] * tokens
        assert row["kept_layers"] <= row["evaluations"] * (6 - 1)  # every mask drops at least one of 6 layers
        assert row["chosen_by"] == "calibration" and isinstance(row["larger_budget_may_change"], bool)
    update_params(workspace, "prune", n_drop=2, ratio=None)
    assert prune(root=str(workspace))["llm_evaluations"] == table["n_evaluations"]  # no design stood under it
    tiny_pipeline.copy(workspace, "data/scores.parquet", "data/metrics")  # (params.yaml too: set them again)
    update_params(workspace, "select", strategy="budgeted", budget=9, n_drops=[1, 2], reuse_scores=True)
    update_params(workspace, "prune", n_drop=2, ratio=None)
    select(root=str(workspace))
    reused = json.loads((data / "select" / "select.json").read_text())
    assert reused["design_evaluations"] == tiny_pipeline.params["sample_masks"]["n_masks"]  # counted in its cost
    assert prune(root=str(workspace))["llm_evaluations"] == reused["design_evaluations"] + reused["n_evaluations"]


def test_a_screened_budgeted_select_pays_screening_at_its_share_of_the_tokens(tiny_pipeline, tmp_path, monkeypatch):
    """select.screen_windows: screening on 1 of the 4 calibration windows costs 1/4 of an evaluation, in
    select.json, prune's cost and within the budget; a screen as large as the game is refused in one line"""
    from flows.prune import prune

    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    workspace = tiny_pipeline.copy(tmp_path / "ws", "data/model", "data/windows")
    update_params(workspace, "select", strategy="budgeted", budget=9, n_drops=[1, 2], reuse_scores=False)
    update_params(workspace, "select", screen_windows=1)
    select(root=str(workspace))
    table = json.loads((workspace / "data" / "select" / "select.json").read_text())
    assert table["screen_windows"] == 1 and table["screen_cost"] == 0.25 and table["n_screen_evaluations"] > 0
    paid = table["n_evaluations"] + 0.25 * table["n_screen_evaluations"]
    assert table["equivalent_evaluations"] == pytest.approx(paid) and paid <= 9
    per_k = table["chosen"]
    assert sum(per_k[k]["screen_evaluations"] for k in ("1", "2")) == table["n_screen_evaluations"]
    assert all(row["chosen_by"] == "calibration" and row["evaluations"] >= 1 for row in per_k.values())
    update_params(workspace, "prune", n_drop=2, ratio=None)
    assert prune(root=str(workspace))["llm_evaluations"] == math.ceil(paid)
    update_params(workspace, "select", screen_windows=4)
    with pytest.raises(ConfigError, match=r"4 of 4 calibration windows is no screen; use 1 to 3"):
        select(root=str(workspace))


def test_select_on_the_repaired_game_reports_what_its_fits_cost(tiny_pipeline, tmp_path, monkeypatch):
    """select.repair linear: beside its evaluations, select.json names the runs fitted and the passes over the fit
    windows, also as layer-token forwards (fit tokens x layers run, at most every layer)"""
    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    workspace = tiny_pipeline.copy(tmp_path / "ws", "data/model", "data/windows")
    update_params(workspace, "select", strategy="budgeted", budget=9, n_drops=[1, 2], reuse_scores=False)
    update_params(workspace, "select", repair="linear")
    select(root=str(workspace))
    table = json.loads((workspace / "data" / "select" / "select.json").read_text())
    assert table["repair"] == "linear" and 0 < table["n_evaluations"] <= 9
    assert 1 <= table["fit_passes"] <= table["n_evaluations"] and table["fit_runs"] >= 1
    fit_tokens = tiny_pipeline.params["prepare_data"]["repair_windows"] * 32  # every repair window, 32 tokens each
    assert 0 < table["fit_layer_token_forwards"] <= table["fit_passes"] * fit_tokens * 6
    assert table["fit_layer_token_forwards"] % fit_tokens == 0  # whole layers over every fit token


def test_lora_healing_on_top_of_the_linear_repair(tiny_pipeline, tmp_path, monkeypatch):
    """repair.method linear+lora: the linear maps, then LoRA, merged back to the pruned model's size."""
    from flows.repair import repair

    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    workspace = tiny_pipeline.copy(tmp_path / "ws", "data/model", "data/pruned", "data/windows")
    every = tiny_pipeline.params["prepare_data"]["repair_windows"]  # each step's batch: every repair window,
    update_params(workspace, "repair", method="linear+lora", lora_batch_size=every)  # so the losses compare
    healed = repair(root=str(workspace))
    linear = tiny_pipeline.results["repair"]
    assert healed["parameters"] == linear["parameters"] and healed["parameters_added"] == 0
    assert healed["lora"]["steps"] == 4 and healed["lora"]["losses"][-1] < healed["lora"]["losses"][0]
    assert healed["linear"]["repaired"] == linear["linear"]["repaired"]  # the same maps before LoRA
    reloaded = AutoModelForCausalLM.from_pretrained(workspace / "data" / "repaired")
    assert len(reloaded.model.layers) == 4 and not any("lora" in n for n, _ in reloaded.named_parameters())
    assert not (workspace / "data" / ".repair_work").exists()  # checkpoints removed once the model is saved


def test_lora_by_distillation_from_the_full_model(tiny_pipeline, tmp_path, monkeypatch):
    """repair.lora_loss kd: the stage loads the full model as the teacher; the first loss is the pruned
    model's KL from it (positive: layers are missing) and healing lowers it."""
    from flows.repair import repair

    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    workspace = tiny_pipeline.copy(tmp_path / "ws", "data/model", "data/pruned", "data/windows")
    every = tiny_pipeline.params["prepare_data"]["repair_windows"]  # each step on the same text
    update_params(workspace, "repair", method="lora", lora_loss="kd", lora_batch_size=every)
    healed = repair(root=str(workspace))
    losses = healed["lora"]["losses"]
    assert healed["lora"]["loss"] == "kd" and 0 < losses[-1] < losses[0] and healed["parameters_added"] == 0


def test_the_repair_mix_changes_the_repair_windows_alone_and_names_its_text(tiny_pipeline, tmp_path, monkeypatch):
    """prepare_data.repair_mix (the default: half wiki, half CoQA) against none: the repair windows come from
    the mix (their parquet says which), every other window file is byte for byte the same."""
    from flows.prepare_data import prepare_data
    from tasks.shared.artifacts import read_windows

    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    workspace = tiny_pipeline.copy(tmp_path / "ws", "data/model")
    assert yaml.safe_load((workspace / "params.yaml").read_text())["prepare_data"]["repair_mix"] == {
        "wiki_extracts": 0.5,
        "coqa_stories": 0.5,
    }
    update_params(workspace, "prepare_data", repair_mix=None)
    prepare_data(root=str(workspace))
    mixed, alone = tiny_pipeline.root / "data" / "windows", workspace / "data" / "windows"
    files = sorted(p.relative_to(mixed) for p in mixed.rglob("*.parquet"))
    assert files == sorted(p.relative_to(alone) for p in alone.rglob("*.parquet")) and len(files) >= 6
    for rel in files:
        same = np.array_equal(read_windows(mixed / rel), read_windows(alone / rel))
        assert same == (rel.name != "repair.parquet"), rel
    assert set(pd.read_parquet(mixed / "repair.parquet").source) == {"wiki_extracts 0.5 + coqa_stories 0.5"}
    assert set(pd.read_parquet(alone / "repair.parquet").source) == {"wiki_extracts"}


def test_another_estimator_draws_scores_and_replays_its_own_design(tiny_pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    workspace = tiny_pipeline.copy(tmp_path / "ws")
    data = workspace / "data"
    update_params(workspace, "estimate_shapley", estimator="surrogate_cv")
    update_params(workspace, "score_masks", stop="cap")  # another estimator's design is scored whole
    for stage in (sample_masks, score_masks, fit_surrogate, estimate_shapley):
        stage(root=str(workspace))
    scores = pd.read_parquet(data / "scores.parquet")
    assert 10 <= len(scores) <= 18 and set(scores["n_kept"]) == set(range(6))  # every size, the empty one too
    estimate = json.loads((data / "shapley" / "shapley.json").read_text())
    assert estimate["estimator"] == "surrogate_cv" and estimate["n_evaluations"] == len(scores)
