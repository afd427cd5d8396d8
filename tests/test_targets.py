"""Budget targets for prune (shapprune/targets.py): each derives the k it should, an impossible one is refused
with the nearest feasible value before any work, and what was reached reaches the summary, the card and MLflow."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
import yaml

from shapprune.config import ConfigError, parse_params
from shapprune.models import parameter_count
from shapprune.surgery import keep_layers
from shapprune.targets import (
    CostModel,
    InfeasibleTarget,
    LayerCount,
    ModelStructure,
    Target,
    n_drop_for,
    reached,
    read_structure,
)
from tests.conftest import ROOT, tiny_llama

# 10 layers of 1 M parameters, 10 M outside them (a 5 M output projection): 20 M, 40 MB in bf16, 2 MB a layer
TEN = ModelStructure((1_000_000,) * 10, 10_000_000, 5_000_000)


def _params(**target) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["prune"] |= {"n_drop": None, "ratio": None, "target": target}
    return raw


# --- each target derives its k ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "k"),
    [(0.8, 4), (0.75, 5), (0.96, 1), (0.9999, 1), (15_000_000, 5), (15_500_000, 5), (11_000_000, 9)],
)
def test_params_target_removes_the_fewest_layers_that_keep_at_most_that_many(value, k):
    assert n_drop_for(Target("params", value), TEN) == k
    assert TEN.kept_params(k) <= (value * TEN.total_params if value < 1 else value) < TEN.kept_params(k - 1)


@pytest.mark.parametrize(("mb", "dtype_bytes", "k"), [(30, 2, 5), (31.5, 2, 5), (38, 2, 1), (60, 4, 5), (44, 4, 9)])
def test_size_target_counts_the_exported_dtypes_bytes(mb, dtype_bytes, k):
    assert n_drop_for(Target("size_mb", mb), TEN, dtype_bytes) == k
    assert TEN.size_mb(k, dtype_bytes) <= mb < TEN.size_mb(k - 1, dtype_bytes)


def test_speedup_target_follows_the_given_cost_model():
    # matrix multiplies: 5 M fixed + 1 M a layer: 15 / (15 - k)
    assert n_drop_for(Target("speedup", 1.5), TEN) == 5
    assert n_drop_for(Target("speedup", 1.07), TEN) == 1
    # a measured cost: one layer 0.5 of the non-layer parts: 6 / (6 - 0.5 k)
    assert n_drop_for(Target("speedup", 1.5), TEN, cost=CostModel.uniform(0.5, 10)) == 4
    assert CostModel.uniform(0.5, 10).speedup(4) == pytest.approx(1.5)
    # layers that differ: the k cheapest count, so the target holds whichever k layers go
    mixed = CostModel(1.0, (1.0, 1.0, 2.0, 2.0))
    assert mixed.speedup(1) == pytest.approx(7 / 6)
    assert n_drop_for(Target("speedup", 1.4), ModelStructure((1, 1, 1, 1), 1, 1), cost=mixed) == 2


def test_reached_figures_are_those_of_the_set_removed():
    r = reached(TEN, [2, 3, 4], 2)
    assert (r.k, r.kept_params, r.fraction, r.size_mb) == (3, 17_000_000, 0.85, 34.0)
    assert r.speedup == pytest.approx(15 / 12)


# --- impossible targets: one line, the nearest feasible value --------------------------------------------------


def test_a_target_past_one_kept_layer_names_the_smallest_reachable_value():
    with pytest.raises(InfeasibleTarget) as err:
        n_drop_for(Target("params", 0.5), TEN)
    assert str(err.value) == (
        "params 0.5 of the full model's cannot be met: removing 9 of 10 layers (one layer kept) reaches params "
        "0.55 (11,000,000 parameters); ask for that or a looser params"
    )
    with pytest.raises(InfeasibleTarget, match=r"reaches size_mb 22; "):
        n_drop_for(Target("size_mb", 20), TEN)
    with pytest.raises(InfeasibleTarget, match=r"reaches speedup 2.5; "):
        n_drop_for(Target("speedup", 3), TEN)
    with pytest.raises(InfeasibleTarget, match=r"met by the full model .*ask for params 19,000,000 or less"):
        n_drop_for(Target("params", 25_000_000), TEN)


def test_a_baselines_recorded_sets_bound_k():
    limit = "score_layers.max_drop_ratio 0.4 lets sleb record"
    assert n_drop_for(Target("params", 0.8), TEN, max_k=4, limit=limit) == 4
    with pytest.raises(InfeasibleTarget) as err:
        n_drop_for(Target("params", 0.75), TEN, max_k=4, limit=limit)
    assert str(err.value).endswith(
        "removing 4 of 10 layers (the most score_layers.max_drop_ratio 0.4 lets sleb record) reaches params 0.8 "
        "(16,000,000 parameters); ask for that or a looser params, or raise score_layers.max_drop_ratio"
    )


# --- exact counts of a saved model ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_the_saved_folders_counts_are_exact(tmp_path, tied):
    model = tiny_llama(tied=tied)
    model.save_pretrained(tmp_path)
    s = read_structure(tmp_path)
    # LLaMA layer: q, o 16x16; k, v 16x8; gate, up, down 16x32; two norms of 16
    assert s.layer_params == (2 * 256 + 2 * 128 + 3 * 512 + 2 * 16,) * 6
    assert s.other_params == 49152 * 16 * (1 if tied else 2) + 16 and s.head_params == 49152 * 16
    assert s.total_params == parameter_count(model)
    keep = np.ones(6, dtype=bool)
    keep[[1, 4]] = False
    keep_layers(model, keep)
    assert s.kept_params(2) == parameter_count(model)
    # the shipped bf16 folder: its safetensors tensor bytes are the size target's figure
    out = tmp_path / "bf16"
    model.to(torch.bfloat16).save_pretrained(out)
    raw = (out / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert len(raw) - 8 - length == s.size_mb(2, 2) * 10**6


# --- the schema: exactly one of n_drop / ratio / target, and prune's k in every stage ------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"params": 0.8, "speedup": 1.2}, "give exactly one of params, size_mb and speedup"),
        ({"size_mb": 200}, "size_mb takes file: hf"),
        ({"params": 0.8, "file": "hf"}, "size_mb takes file: hf"),
        ({"params": 0.8, "layer_cost": 0.1}, "layer_cost goes with speedup only"),
        ({"speedup": 0.9}, "Input should be greater than 1"),
        ({"params": 1.5}, "give a whole number of parameters"),
        ({"size_mb": 200, "file": "gguf"}, "Input should be 'hf'"),
    ],
)
def test_a_malformed_target_is_refused_in_one_line(target, message):
    with pytest.raises(ConfigError) as err:
        parse_params(_params(**target))
    assert len(str(err.value).splitlines()) == 1 and message in str(err.value)
    assert str(err.value).startswith("params.yaml: prune.target")


def test_exactly_one_of_n_drop_ratio_and_target():
    raw = _params(params=0.8)
    raw["prune"]["ratio"] = 0.2
    with pytest.raises(ConfigError, match=r"prune: set exactly one of n_drop, ratio and target \(the others null\)"):
        parse_params(raw)


def test_every_stage_derives_the_same_k_from_the_saved_folder(tmp_path):
    """estimate_shapley and select call ``resolve_n_drop(saved_layer_count(model))``; prune passes the counts."""
    from tasks.shared.model import saved_layer_count

    model = tiny_llama()
    model.save_pretrained(tmp_path)
    s = read_structure(tmp_path)
    n = saved_layer_count(tmp_path)
    assert isinstance(n, LayerCount) and n == 6 and n.model_dir == tmp_path
    kept = s.kept_params(3)  # the fraction that three layers removed reach, exactly
    prune = parse_params(_params(params=kept / s.total_params + 1e-12)).prune
    assert prune.resolve_n_drop(n) == prune.resolve_n_drop(6, s) == 3
    assert parse_params(_params(params=kept)).prune.resolve_n_drop(n) == 3
    assert parse_params(_params(params=kept - 1)).prune.resolve_n_drop(n) == 4
    # the size target reads export.dtype: float32 is twice bf16's bytes
    mb = s.size_mb(2, 2)
    assert parse_params(_params(size_mb=mb, file="hf")).prune.resolve_n_drop(n) == 2
    raw = _params(size_mb=2 * mb, file="hf")
    raw["export"]["dtype"] = "float32"
    assert parse_params(raw).prune.resolve_n_drop(n) == 2
    with pytest.raises(ConfigError, match="needs the saved model's parameter counts"):
        parse_params(_params(params=0.9)).prune.resolve_n_drop(6)  # a bare count: no folder to count


def test_an_impossible_target_is_refused_at_resolution_naming_the_fix(tmp_path):
    tiny_llama().save_pretrained(tmp_path)
    s = read_structure(tmp_path)
    n = LayerCount(6, tmp_path)
    with pytest.raises(ConfigError) as err:
        parse_params(_params(params=0.5)).prune.resolve_n_drop(n)  # the embedding alone is 98 % of the tiny model
    floor = s.kept_params(5) / s.total_params
    assert str(err.value).splitlines() == [
        f"prune.target: params 0.5 of the full model's cannot be met: removing 5 of 6 layers (one layer kept) "
        f"reaches params {np.ceil(floor * 1e4) / 1e4:g} ({s.kept_params(5):,} parameters); ask for that or a "
        "looser params"
    ]
    raw = _params(params=s.kept_params(4))
    raw["prune"]["method"] = "sleb"
    raw["score_layers"]["max_drop_ratio"] = 0.5  # records k = 1..3 of 6
    with pytest.raises(ConfigError, match=r"removing 3 of 6 layers \(the most score_layers.max_drop_ratio 0.5 lets "):
        parse_params(raw).prune.resolve_n_drop(n)


def test_the_default_params_stay_a_ratio():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert raw["prune"] == {"method": "select", "n_drop": None, "ratio": 0.2, "target": None}


# --- what was reached: prune's record, the summary, the card, MLflow -------------------------------------------------


def _record(tmp_path, **target) -> tuple[dict, ModelStructure]:
    from tasks.prune import target_record

    tiny_llama().save_pretrained(tmp_path)
    s = read_structure(tmp_path)
    prune = parse_params(_params(**target)).prune
    return target_record(prune, s, [1, 2], "bfloat16"), s


def test_prune_records_the_target_and_what_its_set_reaches(tmp_path):
    from tasks.shared.contracts import TargetReached

    record, s = _record(tmp_path, speedup=1.01)
    assert record["asked"] == "speedup 1.01x (predicted)" and record["spec"] == {"speedup": 1.01}
    assert record["cost_model"] == "matrix multiplies per token"
    reached_ = TargetReached.from_dict(record)
    assert (reached_.n_drop, reached_.kept_params) == (2, s.kept_params(2))
    assert reached_.line() == (
        f"speedup 1.01x (predicted); reached with 2 layers removed: {s.kept_params(2):,} parameters kept "
        f"({s.kept_params(2) / s.total_params:.1%}), {s.size_mb(2, 2):.1f} MB in bfloat16, "
        f"{CostModel.from_flops(s).speedup(2):.2f}x tokens/s predicted (matrix multiplies per token)."
    )


def test_the_summary_and_the_card_state_the_target(tmp_path):
    from shapprune.export.card import model_card
    from tasks.report import summary_markdown
    from tasks.shared.contracts import PruningRecord
    from tests.export.test_card import facts
    from tests.tasks.test_report import _eval

    record, s = _record(tmp_path, params=0.99)
    info = {
        "method": "select",
        "n_layers_before": 6,
        "dropped_layers": [1, 2],
        "kept_layers": [0, 3, 4, 5],
        "parameters_before": s.total_params,
        "parameters_after": s.kept_params(2),
        "target": record,
    }
    pruning = PruningRecord.from_dict(info)
    line = pruning.target.line()
    assert line.startswith("params 0.99 of the full model's; reached with 2 layers removed")
    full, pruned = (_eval(w, {"wiki": 20.0}, 0.4, 0.5) for w in ("full", "pruned"))
    fidelity = type("F", (), {"r2": 0.9, "spearman": 0.9, "n_validation": 10})()
    scoring = type("S", (), {"n_masks": 5, "n_nonfinite": 0, "seconds_per_mask": 0.1, "device": "cpu", "full_ppl": 1.0})
    summary = summary_markdown(full, pruned, pruning, fidelity, scoring())
    assert f"Target: {line}" in summary.splitlines()
    assert f"- **Target**: {line}" in model_card(facts(target=line)).splitlines()
    assert "Target" not in model_card(facts())  # no target, no line
    assert "Target" not in summary_markdown(full, pruned, PruningRecord.from_dict(info | {"target": None}),
                                            fidelity, scoring())  # fmt: skip


def test_mlflow_gets_the_target_and_the_measured_speed():
    from tasks.prune import target_metrics

    speed = {
        "measured_layer_cost": {"layer_cost": {"min": 0.1, "median": 0.2, "max": 0.3}},
        "measured_prefill": {"speedup": {"min": 1.1, "median": 1.2, "max": 1.3}, "repeats": 3},
    }
    reached_ = reached(TEN, [0, 1], 2).as_dict()
    metrics = {"target": "params 0.9", **reached_, **speed, "predicted_speedup_at_measured_cost": 1.25}
    logged = target_metrics(metrics)
    assert logged["target_n_drop"] == 2 and logged["target_kept_params"] == 18_000_000
    assert logged["target_size_mb"] == 36.0 and logged["target_predicted_speedup"] == pytest.approx(15 / 13, 1e-4)
    assert logged["measured_speedup_median"] == 1.2 and logged["measured_layer_cost_max"] == 0.3
    assert logged["target_predicted_speedup_at_measured_cost"] == 1.25


def test_the_speed_check_measures_in_seconds(tiny_model):
    from tasks.prune import speed_check

    pruned = tiny_llama()
    keep = np.ones(6, dtype=bool)
    keep[:3] = False
    keep_layers(pruned, keep)
    speed = speed_check(tiny_model, pruned)
    cost, prefill = speed["measured_layer_cost"], speed["measured_prefill"]
    assert cost["windows"] == 3 and 0 < cost["layer_cost"]["min"] <= cost["layer_cost"]["median"]
    assert prefill["repeats"] == 3 and prefill["speedup"]["min"] <= prefill["speedup"]["max"]
    json.dumps(speed)  # it goes into data/metrics/prune.json


# --- the shipped model in DVC's model registry ----------------------------------------------------------------------


def test_the_dvc_model_artifact_is_the_folder_export_writes():
    from tasks.shared.paths import Paths

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    models = {name: a for name, a in dvc["artifacts"].items() if a["type"] == "model"}
    assert list(models) == ["shapprune-model"]
    artifact = models["shapprune-model"]
    folder = Paths(ROOT).export / "model"
    assert ROOT / artifact["path"] == folder and artifact["desc"] and artifact["labels"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in dvc["stages"]["export"]["outs"]]
    assert any(folder.is_relative_to(ROOT / out) for out in outs), outs
    source = (ROOT / "flows" / "export.py").read_text()
    assert 'save_shippable(model, rep.tokenizer, paths.export / "model"' in source  # the stage writes it there


def test_every_stage_refuses_an_impossible_target_when_it_opens(tmp_path):
    """score_masks (heavy) runs before the stages that read prune's k: each stage checks the target at its start,
    but prepare_model, which rewrites the folder the check reads."""
    from tasks.shared.runtime import Stage

    tiny_llama().save_pretrained(tmp_path / "data" / "model")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params(params=0.5)))
    for stage in ("sample_masks", "score_masks", "select"):
        with pytest.raises(ConfigError, match=r"^prune.target: params 0.5 of the full model's cannot be met"):
            Stage.open(stage, tmp_path)
    assert Stage.open("prepare_model", tmp_path).name == "prepare_model"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params(params=0.99)))
    assert Stage.open("score_masks", tmp_path).all_params.prune.target.params == 0.99
