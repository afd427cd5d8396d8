"""The house's written rules (README "Layout", docs/pipeline.md), each checked on the code as it is.

Each test fails when its rule is broken, naming where: a rule that is written down is a rule that holds.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
import yaml

from scripts.stage_deps import ROOT, declared_deps, derived_deps, imports_of
from tasks.shared.lifecycle import Recipe, run_stage

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
STAGES = sorted(DVC)
NOT_STAGES = {"__init__", "pipeline"}  # flows/pipeline.py runs `dvc repro` as one flow; it is no stage


def _py(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _task_names(path: Path) -> list[str]:
    """Functions made Prefect tasks in ``path``: ``@task(...)`` / ``@task`` decorators and ``task(...)(fn)`` calls."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if isinstance(target, ast.Name) and target.id == "task":
                    found.append(node.name)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Call):
            inner = node.func.func
            if isinstance(inner, ast.Name) and inner.id == "task":
                found.append(ast.unparse(node.args[0]) if node.args else "?")
    return found


def test_every_flow_file_is_a_stage_and_every_stage_has_its_flow_and_params_section():
    flows = {p.stem for p in (ROOT / "flows").glob("*.py")} - NOT_STAGES
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert flows == set(STAGES)
    assert not [s for s in STAGES if s not in params and s != "report"], "a stage without its params.yaml section"


def test_no_prefect_task_under_flows():
    """A stage's Prefect tasks live in tasks/<stage>.py; flows/ holds stage shells only."""
    offenders = {_rel(p): names for p in _py("flows") if (names := _task_names(p))}
    assert not offenders, f"move these tasks to tasks/<stage>.py: {offenders}"


def test_tasks_files_belong_to_one_stage_and_hold_its_tasks():
    """tasks/<stage>.py (or tasks/<stage>_<part>.py) holds that stage's code; every task outside tasks/shared/
    sits in such a file."""
    known = set(STAGES) | {"pipeline"}
    strays = [
        _rel(p)
        for p in (ROOT / "tasks").glob("*.py")
        if p.stem != "__init__" and p.stem not in known and not any(p.stem.startswith(s + "_") for s in known)
    ]
    assert not strays, f"tasks/ files named after no stage: {strays}"


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_other_stages_tasks(stage: str):
    """flows/<stage>.py and tasks/<stage>*.py reach another stage's tasks only through tasks/shared/."""
    own = [ROOT / "flows" / f"{stage}.py", *(ROOT / "tasks").glob(f"{stage}*.py")]
    others = {s for s in (*STAGES, "pipeline") if s != stage and not s.startswith(stage)}
    bad = [
        (_rel(p), _rel(dep))
        for p in own
        for dep in imports_of(p)
        if dep.parent == ROOT / "tasks" and any(dep.stem == s or dep.stem.startswith(s + "_") for s in others)
    ]
    assert not bad, f"{stage} imports another stage's tasks module; move what both use to tasks/shared/: {bad}"


def test_tasks_shared_holds_only_what_two_or_more_stages_use():
    users: dict[str, set[str]] = {}
    for stage in STAGES:
        seen, todo = set(), [ROOT / "flows" / f"{stage}.py"]
        while todo:
            for dep in imports_of(todo.pop()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        for dep in seen:
            users.setdefault(_rel(dep), set()).add(stage)
    shared = [_rel(p) for p in (ROOT / "tasks" / "shared").glob("*.py") if p.stem != "__init__"]
    lonely = {m: sorted(users.get(m, ())) for m in shared if len(users.get(m, ())) < 2}
    assert not lonely, f"tasks/shared/ modules used by fewer than two stages (move them to tasks/<stage>.py): {lonely}"


@pytest.mark.parametrize("stage", STAGES)
def test_every_flow_is_the_recipe_lifecycle(stage: str):
    """The @flow's body is ``return run_stage(<Recipe>(...), root)`` and its recipe keeps the protocol."""
    module = importlib.import_module(f"flows.{stage}")
    fn = getattr(module, stage)
    body = ast.parse(inspect.getsource(fn.fn)).body[0].body
    body = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]  # docstring
    assert len(body) == 1 and isinstance(body[0], ast.Return), f"flows/{stage}.py: the flow body is one return"
    call = body[0].value
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == run_stage.__name__, ast.unparse(call)
    recipe_call = call.args[0]
    assert isinstance(recipe_call, ast.Call)
    recipe_cls = getattr(module, ast.unparse(recipe_call.func))
    args = ["full"] if stage == "evaluate" else []
    recipe = recipe_cls(*args)
    assert isinstance(recipe, Recipe), f"{recipe_cls.__name__} misses a step of the Recipe protocol"
    assert recipe.name.split("@")[0] == stage


@pytest.mark.parametrize("stage", STAGES)
def test_a_stages_log_step_writes_no_file(stage: str):
    module = importlib.import_module(f"flows.{stage}")
    recipe = next(v for v in vars(module).values() if inspect.isclass(v) and getattr(v, "name", None) is not None
                  and v.__module__ == module.__name__ and hasattr(v, "log"))  # fmt: skip
    source = inspect.getsource(recipe.log)
    writes = re.findall(r"write_json|write_text|to_csv|to_parquet|savefig|\.save\(|write_table|open\(", source)
    assert not writes, f"flows/{stage}.py: log writes files ({writes}); that is write's job"


def test_the_pure_core_holds_no_pipeline_wiring():
    """shapprune/ knows no stage, no dvc.yaml, no Prefect, MLflow or DVC."""
    wiring = re.compile(r"dvc\.yaml|STAGE_PARAMS|^\s*(import|from) (prefect|mlflow|dvc|tasks|flows)\b", re.M)
    offenders = [_rel(p) for p in _py("shapprune") if wiring.search(p.read_text())]
    assert not offenders, offenders


def test_no_stage_reads_another_stages_json_by_key():
    """JSON crosses a stage boundary only through the typed readers of tasks/shared/contracts (a saved model's
    own ``config.json`` is the model's format, no stage's record)."""
    contracts = ROOT / "tasks" / "shared" / "contracts"
    pattern = re.compile(r"\bread_json\(|json\.loads?\(|\.raw\b")
    files = [p for p in [*_py("flows"), *_py("tasks")] if p.parent != contracts and p.stem not in NOT_STAGES]
    offenders = [
        f"{_rel(p)}:{n}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line) and "config.json" not in line
    ]
    assert not offenders, f"read these through a typed reader in tasks/shared/contracts: {offenders}"


def test_random_streams_are_named():
    """Every seeded generator comes from shapprune.streams.stream (or the text splits' named streams)."""
    allowed = {"shapprune/streams.py", "shapprune/data/splits.py"}
    pattern = re.compile(r"default_rng\(\s*\[")
    offenders = [_rel(p) for p in [*_py("flows"), *_py("tasks"), *_py("shapprune")]
                 if _rel(p) not in allowed and pattern.search(p.read_text())]  # fmt: skip
    assert not offenders, f"name the stream in shapprune/streams.py and call stream(seed, name): {offenders}"


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_code_deps_are_what_the_stage_imports(stage: str):
    """dvc.yaml lists exactly the code a stage runs (``python -m scripts.stage_deps --write`` rewrites it)."""
    assert declared_deps()[stage] == derived_deps(stage), "run `python -m scripts.stage_deps --write`"


def test_stage_deps_rewrite_keeps_data_deps_and_replaces_code_deps():
    from scripts.stage_deps import rewrite

    text = "stages:\n  a:\n    cmd: x\n    deps:\n      - flows/a.py\n      - data/model\n"
    text += "      - tasks/old.py\n    outs:\n"
    out = rewrite(text, {"a": ["flows/a.py", "shapprune/new.py"]})
    assert out == (
        "stages:\n  a:\n    cmd: x\n    deps:\n      - flows/a.py\n      - shapprune/new.py\n      - data/model\n"
        "    outs:\n"
    )
