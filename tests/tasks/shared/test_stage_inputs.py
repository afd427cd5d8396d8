"""Each stage's params are declared once (STAGE_PARAMS): dvc.yaml lists exactly them, MLflow logs exactly them."""

from __future__ import annotations

import ast
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from shapprune.config import load_params
from tasks.shared import runtime
from tasks.shared.runtime import Stage
from tasks.shared.stage_inputs import STAGE_PARAMS
from tasks.shared.tracking import NullTracker

ROOT = Path(__file__).resolve().parents[3]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _body(name: str) -> dict:
    return STAGES[name].get("do", STAGES[name])


def test_every_dvc_stage_has_one_flow_one_section_and_one_declaration():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(STAGES) == set(STAGE_PARAMS)
    for name in STAGES:
        assert (ROOT / "flows" / f"{name}.py").is_file(), name
        assert name in params, f"params.yaml has no section {name}"
        assert f"python -m flows.{name}" in _body(name)["cmd"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_flow_is_named_after_its_stage(name):
    """``flows/<stage>.py`` holds one ``@flow(name=<stage>)`` (its body's shape: ``tests/test_layout.py``)."""
    tree = ast.parse((ROOT / "flows" / f"{name}.py").read_text())
    flows = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d).startswith(f"flow(name='{name}'") for d in node.decorator_list)
    ]
    assert len(flows) == 1, f"flows/{name}.py: one @flow(name={name!r}) expected"


@pytest.mark.parametrize("name", sorted(STAGE_PARAMS))
def test_dvc_yaml_lists_exactly_the_declared_tracked_params(name):
    assert sorted(_body(name).get("params") or []) == sorted(STAGE_PARAMS[name].tracked)


@pytest.mark.parametrize("name", sorted(STAGE_PARAMS))
def test_the_stage_run_logs_exactly_the_declared_params(name, monkeypatch, tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    tracker = NullTracker()

    @contextmanager
    def fake_stage(root, stage, params):
        yield tracker

    monkeypatch.setenv("SHAPPRUNE_TRACKING", "mlflow")
    monkeypatch.setattr(runtime, "mlflow_stage", fake_stage)
    stage = Stage.open(name, tmp_path)
    with stage.tracking():
        pass
    logged = {
        key.rsplit(".", 1)[0] if key.rsplit(".", 1)[0] in STAGE_PARAMS[name].tracked else key for key in tracker.params
    }
    assert logged == set(STAGE_PARAMS[name].tracked)
    assert set(tracker.tags) == {f"runtime.{k}" for k in STAGE_PARAMS[name].runtime}
    full = load_params(ROOT / "params.yaml")
    for key, value in tracker.params.items():  # the values are the params.yaml values
        obj = full
        for part in key.split("."):
            obj = getattr(obj, part)
        assert obj == value or getattr(obj, "model_dump", lambda **_: None)(mode="json") == value


def test_a_stage_cannot_read_a_param_it_does_not_declare(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    stage = Stage.open("fit_surrogate", tmp_path)
    assert stage.params.fit_surrogate.epochs > 0 and stage.params.score_masks.utility
    with pytest.raises(AttributeError, match=r"STAGE_PARAMS\['fit_surrogate'\]"):
        _ = stage.params.score_masks.batch_size
    with pytest.raises(AttributeError, match="does not declare"):
        _ = stage.params.evaluate
