"""``stage_main``: bad input is one ``error:`` line and exit 2 with no traceback; anything else is a bug and keeps
its traceback."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shapprune.config import ConfigError, load_params
from shapprune.estimators.replay import MissingScore
from shapprune.evaluation.harness import HarnessError
from shapprune.integrity import CorruptModelError
from tasks.shared.runtime import PREFECT_RUN_LOGGERS, stage_main
from tasks.shared.runtime import _NoTracebackForBadInput as QUIET

ROOT = Path(__file__).resolve().parents[3]


class FakeFlow:
    """What ``stage_main`` needs of a Prefect flow: a name, and a call with the parsed arguments."""

    name = "fake"

    def __init__(self, error: BaseException | None = None, log_as_prefect: bool = False) -> None:
        self.error, self.log_as_prefect, self.calls = error, log_as_prefect, []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        if self.error is None:
            return {}
        if self.log_as_prefect:  # what Prefect's flow engine does before the exception reaches stage_main
            try:
                raise self.error
            except Exception as exc:
                logging.getLogger("prefect.flow_runs").exception("Encountered exception during execution: %r", exc)
        raise self.error


@pytest.fixture
def root(tmp_path) -> Path:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


@pytest.fixture
def prefect_log():
    """Everything logged on Prefect's flow-run logger while a test runs, formatted as a console handler would."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    logger = logging.getLogger("prefect.flow_runs")
    saved = logger.handlers, logger.propagate  # Prefect's own handlers (console, API) are not under test
    logger.handlers, logger.propagate = [Collect()], False
    yield lines
    logger.handlers, logger.propagate = saved


def test_a_flow_that_finishes_exits_normally(root, capsys):
    flow = FakeFlow()
    stage_main(flow, ["--root", str(root)])
    assert flow.calls == [{"root": str(root)}]
    assert capsys.readouterr().err.startswith("stage fake finished in ")


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("select.screen_windows: 10 of 10 calibration windows is no screen; use 1 to 9, or 0"),
        HarnessError("evaluate.lm_eval_tasks: lm-eval has no task 'mmlu_x'; `lm_eval ls tasks` lists them"),
        MissingScore("data/scores.parquet has no score for mask 0110; rerun `dvc repro` (sample_masks, score_masks)"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_traceback(root, capsys, error):
    with pytest.raises(SystemExit) as exit_:
        stage_main(FakeFlow(error), ["--root", str(root)])
    assert exit_.value.code == 2 and exit_.value.__cause__ is None and exit_.value.__suppress_context__
    assert capsys.readouterr().err == f"error: {error}\n"


def test_a_corrupt_model_file_names_the_stage_that_rebuilds_it(root, capsys):
    weights = root / "data" / "pruned" / "model.safetensors"
    with pytest.raises(SystemExit) as exit_:
        stage_main(FakeFlow(CorruptModelError(weights, "header cut short")), ["--root", str(root)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {weights} is corrupt (header cut short); rerun `dvc repro -f prune`\n"


def test_bad_params_stop_before_the_flow_runs(root, capsys):
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["prepare_data"]["repair_mix"] = {"wiki_extracts": 0.5, "nosuch": 0.5}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    flow = FakeFlow()
    with pytest.raises(SystemExit) as exit_:
        stage_main(flow, ["--root", str(root)])
    assert exit_.value.code == 2 and flow.calls == []
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: params.yaml: prepare_data.repair_mix: unknown text source 'nosuch'; use one of ")


@pytest.mark.parametrize(
    "error",
    [
        ValueError("operands could not be broadcast together with shapes (3,) (4,)"),  # numpy's, not the user's
        KeyError("utility"),
        RuntimeError("CUDA error: device-side assert triggered"),
    ],
)
def test_any_other_error_propagates_with_its_traceback(root, capsys, error):
    with pytest.raises(type(error)) as raised:
        stage_main(FakeFlow(error), ["--root", str(root)])
    assert raised.value is error and raised.value.__traceback__ is not None
    assert "error:" not in capsys.readouterr().err


def test_prefect_logs_bad_input_without_its_traceback(root, prefect_log, capsys):
    with pytest.raises(SystemExit):
        stage_main(FakeFlow(ConfigError("prune: no layer set"), log_as_prefect=True), ["--root", str(root)])
    assert prefect_log == ["Encountered exception during execution: ConfigError('prune: no layer set')"]
    assert capsys.readouterr().err == "error: prune: no layer set\n"


def test_prefect_keeps_the_traceback_of_a_bug_and_the_filter_is_gone_afterwards(root, prefect_log):
    with pytest.raises(ValueError):
        stage_main(FakeFlow(ValueError("a numpy bug"), log_as_prefect=True), ["--root", str(root)])
    [text] = prefect_log
    assert text.startswith("Encountered exception during execution: ValueError('a numpy bug')\nTraceback ")
    assert text.endswith("ValueError: a numpy bug")
    ours = [f for name in PREFECT_RUN_LOGGERS for f in logging.getLogger(name).filters if isinstance(f, QUIET)]
    assert not ours  # Prefect's own filters (other tests' runs in this process) may stay; stage_main's is gone


def _stale_selection(tmp_path: Path, ratio: float) -> Path:
    """A workspace whose select.json searched k = 3, 6, 9 of 30 layers, and prune.ratio asking for more."""
    (tmp_path / "data" / "select").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "select" / "select.json", tmp_path / "data" / "select" / "select.json")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["prune"].update(method="select", n_drop=None, ratio=ratio)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return tmp_path


STALE_SELECT = (
    "prune: select searched k in [6] but prune asks for 27; rerun `dvc repro select`: it searches prune's k "
    "(unless select.n_drops lists others: add it there)"
)


def test_prune_past_what_select_searched_names_the_fix(tmp_path):
    from tasks.prune import read_choice
    from tasks.shared.paths import Paths

    root = _stale_selection(tmp_path, 0.9)
    table = json.loads((root / "data" / "select" / "select.json").read_text())
    assert table["n_layers"] == 30 and sorted(map(int, table["chosen"])) == [6]
    cfg = load_params(root / "params.yaml").prune
    with pytest.raises(ConfigError) as err:
        read_choice(Paths(root), cfg.method, cfg.resolve_n_drop)
    assert str(err.value) == STALE_SELECT


@pytest.mark.slow  # a real Prefect flow run in a subprocess (~40 s: it starts a temporary Prefect server)
def test_prune_run_as_a_stage_prints_its_one_line_and_no_traceback(tmp_path):
    root = _stale_selection(tmp_path, 0.9)
    env = {"SHAPPRUNE_TRACKING": "off", "PATH": str(Path(sys.executable).parent)}
    out = subprocess.run(
        [sys.executable, "-m", "flows.prune", "--root", str(root)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    log = out.stdout + out.stderr
    assert out.returncode == 2, log[-3000:]
    assert "Traceback" not in log
    assert [line for line in log.splitlines() if line.startswith("error:")] == [f"error: {STALE_SELECT}"]
