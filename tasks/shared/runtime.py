"""Shared plumbing for stage flows: params, paths, tracking, threads and clean exits on bad input."""

from __future__ import annotations

import argparse
import logging
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shapprune.config import ConfigError, Params, load_params
from shapprune.evaluation.harness import HarnessError
from shapprune.integrity import CorruptModelError
from shapprune.targets import read_structure
from tasks.shared.guards import stage_lock
from tasks.shared.mlflow_runs import mlflow_stage
from tasks.shared.paths import Paths
from tasks.shared.stage_inputs import STAGE_PARAMS, ParamsView, StageInputs, declared
from tasks.shared.tracking import NullTracker, Tracker

OFFLINE_ENV = {  # the hub is offline only where nothing needs it: see hub_env
    "HF_DATASETS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
}
DVC_YAML = Path(__file__).resolve().parents[1] / "dvc.yaml"  # used when a stage runs outside a DVC project


def stage_outputs(root: Path, stage: str) -> list[Path]:
    """The metrics and plot files ``dvc.yaml`` declares for ``stage`` (``evaluate@full`` fills in ``${key}``)."""
    spec = root / "dvc.yaml" if (root / "dvc.yaml").is_file() else DVC_YAML
    try:
        stages = yaml.safe_load(spec.read_text()).get("stages") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return []
    name, _, key = stage.partition("@")
    body = stages.get(name) or {}
    body = body.get("do", body) if isinstance(body, dict) else {}
    paths = []
    for section in ("metrics", "plots"):
        for entry in body.get(section) or []:
            rel = next(iter(entry)) if isinstance(entry, dict) else str(entry)
            paths.append(root / rel.replace("${key}", key))
    return paths


def log_stage_outputs(tracker: Tracker, root: Path, stage: str) -> list[Path]:
    """Log the stage's DVC metrics and plot data (not images: stages log those as figures) under ``dvc/``."""
    logged = []
    for path in stage_outputs(root, stage):
        if path.is_file() and path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".svg"}:
            tracker.log_artifact(path, str(Path("dvc") / path.relative_to(root).parent))
            logged.append(path)
    return logged


def check_prune_target(params: Params, model_dir: Path) -> None:
    """Refuse a ``prune.target`` that the saved model cannot reach, in every stage, before any heavy work
    (``score_masks`` runs before the stages that read prune's k); a cheap read of the safetensors headers."""
    if params.prune.target is None or not any(model_dir.glob("*.safetensors")):
        return
    try:
        structure = read_structure(model_dir)
    except (OSError, ValueError, struct.error):
        return  # a damaged folder: the stage that loads it says so
    params.prune.resolve_n_drop(structure.n_layers, structure)


@dataclass
class Stage:
    """What a stage flow needs: its name, the params it declares (``STAGE_PARAMS``), artifact paths, a tracker."""

    name: str
    all_params: Params
    paths: Paths
    tracker: Tracker = field(default_factory=NullTracker)  # the open run's, set by tracking() (export registers in it)

    @classmethod
    def open(cls, name: str, root: str | Path = ".") -> Stage:
        paths = Paths(Path(root).resolve())
        params = load_params(paths.params)
        if name != "prepare_model":  # (which rewrites data/model)
            check_prune_target(params, paths.model)
        if params.base.threads:
            import torch

            torch.set_num_threads(params.base.threads)
        return cls(name, params, paths)

    @property
    def inputs(self) -> StageInputs:
        """The params this stage reads, from ``tasks.shared.stage_inputs.STAGE_PARAMS``."""
        return STAGE_PARAMS[self.name.split("@")[0]]

    @property
    def params(self) -> Params:
        """The validated params, restricted to what this stage declares (an undeclared read raises)."""
        inputs = self.inputs
        return ParamsView(self.all_params, inputs.tracked + inputs.runtime, self.name.split("@")[0])  # type: ignore[return-value]

    def section(self) -> dict[str, Any]:
        """The tracked params this stage declares, flattened (exactly what ``dvc.yaml`` lists for it)."""
        return declared(self.all_params, self.inputs.tracked)

    def runtime_tags(self) -> dict[str, str]:
        """The runtime params it declares, as ``runtime.<key>`` tags (they do not change its outputs)."""
        return {f"runtime.{k}": str(v) for k, v in declared(self.all_params, self.inputs.runtime).items()}

    @contextmanager
    def tracking(self) -> Iterator[Tracker]:
        """A nested MLflow run (or a null tracker when ``SHAPPRUNE_TRACKING=off``)."""
        if os.environ.get("SHAPPRUNE_TRACKING", "mlflow") == "off":
            self.tracker = NullTracker()
            yield self.tracker
            return
        with mlflow_stage(self.paths.root, self.name, self.all_params.model_dump(mode="json")) as tracker:
            self.tracker = tracker
            tracker.log_params(self.section())
            tracker.set_tags(self.runtime_tags())
            yield tracker
            try:
                log_stage_outputs(tracker, self.paths.root, self.name)
            except Exception as err:  # tracking must never fail a stage whose work is done
                print(f"WARNING: could not log {self.name}'s outputs to MLflow: {err}", file=sys.stderr)


def hub_env(params: Params) -> None:
    """``HF_HUB_OFFLINE=1`` unless ``base.model`` is a hub id (a user's own setting always wins): the packaged
    default and local models never wait on a network, a hub model downloads."""
    from shapprune.model_source import resolve_source

    try:
        needs_hub = resolve_source(params.base.model).needs_hub
    except ValueError:
        needs_hub = False  # a bad base.model is reported by the stage that loads it
    if not needs_hub:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


# bad input: stage_main reports these as one line, exit 2, no traceback; anything else is a bug and keeps its traceback
BAD_INPUT: tuple[type[Exception], ...] = (ConfigError, CorruptModelError, HarnessError)
PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")  # where Prefect logs the exception that ends a run


class _NoTracebackForBadInput(logging.Filter):
    """Prefect logs the exception that fails a flow or task run with its traceback; for bad input the record
    keeps its one line (``... ConfigError('<message>')``) and loses the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], BAD_INPUT):
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def _quiet_bad_input() -> Iterator[None]:
    quiet = _NoTracebackForBadInput()
    loggers = [logging.getLogger(name) for name in PREFECT_RUN_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def stage_main(
    flow: Callable[..., Any],
    argv: list[str] | None = None,
    extra_args: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Entry point of ``python -m flows.<stage>``: validate params first, run the flow, exit 2 on bad input.

    Bad input (:data:`BAD_INPUT`) is one ``error: ...`` line on stderr and exit 2, with no traceback from us
    or from Prefect's run loggers; any other exception (a ``ValueError`` from numpy too) propagates with its
    traceback."""
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    parser = argparse.ArgumentParser(prog=f"python -m flows.{flow.name}")
    parser.add_argument("--root", default=".", help="project root holding params.yaml and data/")
    if extra_args is not None:
        extra_args(parser)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        hub_env(load_params(Path(args.root) / "params.yaml"))
        name = flow.name + (f"@{args.which}" if getattr(args, "which", None) else "")
        with stage_lock(Path(args.root).resolve(), name), _quiet_bad_input():
            flow(**vars(args))
        print(f"stage {name} finished in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    except BAD_INPUT as err:  # one line per problem, no traceback
        if isinstance(err, CorruptModelError):  # a damaged model file: name the stage that rebuilds it
            from tasks.shared.model import explain_corrupt

            err = explain_corrupt(err)
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
