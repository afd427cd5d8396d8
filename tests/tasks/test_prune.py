"""The prune stage's choice from the upstream tables (select.json here)."""

from __future__ import annotations

import json

import pytest

from shapprune.config import ConfigError
from tasks.prune import read_choice
from tasks.shared.contracts import write_json
from tasks.shared.paths import Paths

TABLE = {
    "method": "select",
    "n_layers": 6,
    "n_drops": [2],
    "budget": 16,
    "rounds": 2,
    "n_evaluations": 12,
    "n_calibration_evaluations": 5,
    "n_validation_evaluations": 7,
    "calibration_full_ppl": 20.0,
    "chosen": {
        "2": {
            "dropped": [3, 4],
            "sources": ["beam", "block"],
            "round": 1,
            "predicted": 0.81,
            "calibration": 0.8,
            "validation": 0.78,
            "ranking": {"dropped": [1, 4], "calibration": 0.7, "validation": None},
        }
    },
}


def test_prune_takes_selects_set_for_its_k(tmp_path):
    paths = Paths(tmp_path)
    write_json(paths.select_json, TABLE)
    method, n_layers, choice = read_choice(paths, "select", lambda n: 2)
    assert (method, n_layers, choice.dropped, choice.kept) == ("select", 6, [3, 4], [0, 1, 2, 5])
    with pytest.raises(ConfigError, match=r"select searched k in \[2\] but prune asks for 3"):
        read_choice(paths, "select", lambda n: 3)
    write_json(paths.select_json, {"method": "sleb"})
    with pytest.raises(ConfigError, match="rerun `dvc repro select`"):
        read_choice(paths, "select", lambda n: 2)


def _shapley(paths: Paths) -> None:
    """Layer 0 lowest, layer 1 next: dropping one, the gap 0.25 over the combined s.e. 0.1 is z = 2.5."""
    values, stderr = [0.10, 0.35, 1.0, 2.0], [0.06, 0.08, 0.05, 0.05]
    layers = [{"layer": i, "shapley": v, "shapley_se": s} for i, (v, s) in enumerate(zip(values, stderr))]
    write_json(paths.shapley_json, {"estimator": "surrogate_cv", "layers": layers})


def test_the_shapley_boundary_is_separated_above_the_given_z(tmp_path):
    paths = Paths(tmp_path)
    _shapley(paths)
    choices = {z: read_choice(paths, "shapley", lambda n: 1, z)[2] for z in (2.0, 3.0)}
    assert all(c.dropped == [0] and c.boundary_z == pytest.approx(2.5) for c in choices.values())
    assert choices[2.0].separated and not choices[3.0].separated
    assert read_choice(paths, "shapley", lambda n: 1)[2].separated  # the default is params.yaml's 2.0


@pytest.mark.parametrize("boundary_z", [None, 2.0, 3.0])
def test_prune_records_the_boundary_against_estimate_shapley_boundary_z(tmp_path, monkeypatch, boundary_z):
    """pruning.json's ``boundary_separated`` follows ``estimate_shapley.boundary_z`` (None: params.yaml's)."""
    import yaml

    import flows.prune as flow
    from tasks.shared.runtime import Stage
    from tests.conftest import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["prune"] |= {"method": "shapley", "n_drop": 1, "ratio": None}
    if boundary_z is not None:
        raw["estimate_shapley"]["boundary_z"] = boundary_z
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    stage = Stage.open("prune", tmp_path)
    _shapley(stage.paths)
    warnings = []
    counts = {"parameters_before": 4}
    monkeypatch.setattr(flow, "prune_model", lambda model, keep, check_speed=False: (None, None, counts))
    monkeypatch.setattr(flow, "save_pruned", lambda model, tokenizer, out: out.mkdir(parents=True))
    monkeypatch.setattr(flow, "llm_evaluations", lambda paths, method: 10)
    monkeypatch.setattr(flow, "get_run_logger", lambda: type("L", (), {"warning": staticmethod(warnings.append)}))
    recipe = flow.Prune()
    pruned = recipe.compute(stage, recipe.read(stage))
    recipe.write(stage, pruned)
    info = pruned.info
    separated = boundary_z != 3.0
    assert info["boundary_z"] == pytest.approx(2.5) and info["boundary_separated"] is separated
    assert json.loads((stage.paths.pruned / "pruning.json").read_text())["boundary_separated"] is separated
    assert len(warnings) == (not separated) and all("(< 3)" in w for w in warnings)


def test_prune_to_a_target_records_what_it_reached_and_the_measured_speed(tmp_path, monkeypatch, smol_tokenizer):
    """prune.target: k from the saved model's counts; pruning.json, data/metrics/prune.json, MLflow and the
    stage's summary state the target, what was reached and the speed measured after the cut."""
    import yaml

    import flows.prune as flow
    from shapprune.targets import read_structure
    from tasks.shared.runtime import Stage
    from tasks.shared.tracking import NullTracker
    from tests.conftest import ROOT, tiny_llama

    stage_root = tmp_path
    model_dir = stage_root / "data" / "model"
    tiny_llama().save_pretrained(model_dir)
    smol_tokenizer.save_pretrained(model_dir)
    s = read_structure(model_dir)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["prune"] |= {"method": "shapley", "n_drop": None, "ratio": None, "target": {"params": s.kept_params(2)}}
    (stage_root / "params.yaml").write_text(yaml.safe_dump(raw))
    stage = Stage.open("prune", stage_root)
    values = [0.5, 0.1, 0.2, 1.0, 2.0, 3.0]
    layers = [{"layer": i, "shapley": v, "shapley_se": 0.01} for i, v in enumerate(values)]
    write_json(stage.paths.shapley_json, {"estimator": "surrogate_cv", "layers": layers})
    monkeypatch.setattr(flow, "llm_evaluations", lambda paths, method: 10)
    for task in ("prune_model", "save_pruned"):  # the functions, without a Prefect server
        monkeypatch.setattr(flow, task, getattr(flow, task).fn)
    recipe = flow.Prune()
    pruned = recipe.compute(stage, recipe.read(stage))
    recipe.write(stage, pruned)
    info = json.loads((stage.paths.pruned / "pruning.json").read_text())
    assert info["dropped_layers"] == [1, 2] and info["parameters_after"] == s.kept_params(2)
    assert info["target"]["reached"]["n_drop"] == 2 and info["target"]["asked"] == f"params {s.kept_params(2):,}"
    assert "measured_prefill" not in info  # timings stay out of the DVC-tracked record
    metrics = json.loads(stage.paths.metrics_file("prune").read_text())
    assert metrics["kept_params"] == s.kept_params(2) and metrics["measured_prefill"]["repeats"] == 3
    tracker = NullTracker()
    recipe.log(tracker, stage, pruned)
    assert tracker.metrics["target_n_drop"] == 2 and "measured_speedup_median" in tracker.metrics
    assert tracker.tags["target"] == info["target"]["asked"]
    summary = recipe.summary(pruned).splitlines()
    assert summary[1].startswith(f"Target: params {s.kept_params(2):,}; reached with 2 layers removed")
    assert summary[2].startswith("Measured here: prefill speedup ")
