"""Typed readers of the JSON artifacts that cross a stage boundary, and the one strict JSON writer.

Each artifact that one stage writes and another reads has a dataclass here with a ``read`` that checks it
and names the stage to rerun when it is missing or stale; no stage reads another's JSON by string key.
Non-finite floats are written as ``null`` (strict JSON) and read back as ``nan``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shapprune.config import ConfigError
from shapprune.scoring import NLL


def strict(obj: Any) -> Any:
    """NaN / inf -> ``None``, numpy scalars -> Python, recursively (what strict JSON can hold)."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def write_json(path: Path, data: Any) -> Path:
    """Write pretty, strict JSON atomically (temp file + rename); non-finite floats become ``null``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(strict(data), indent=2, sort_keys=False, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> Any:
    """Read JSON, with a clear error naming what to rerun when it is missing or unreadable."""
    if not path.is_file():
        raise ConfigError(f"{path}: missing; run the stage that makes it first (`dvc repro`)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err}); delete it and rerun `dvc repro`") from None


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _sets(chosen: dict[str, Any]) -> dict[int, list[int]]:
    return {int(k): sorted(int(i) for i in (v["dropped"] if isinstance(v, dict) else v)) for k, v in chosen.items()}


@dataclass(frozen=True)
class ScoringSummary:
    """``data/metrics/score_masks.json``: what scoring the masks cost and the full model's calibration NLL."""

    n_masks: int
    n_nonfinite: int
    full_ppl: float
    full_nll_mean: float
    calibration_tokens: int
    seconds: float
    seconds_per_mask: float
    device: str
    dtype: str | None = None  # the precision masks were scored in (None: an older file)

    @property
    def full_nll(self) -> NLL:
        """The full model's summed NLL over the calibration tokens."""
        return NLL(self.full_nll_mean * self.calibration_tokens, self.calibration_tokens)

    @classmethod
    def read(cls, path: Path) -> ScoringSummary:
        d = read_json(path)
        try:
            return cls(
                int(d["n_masks"]),
                int(d["n_nonfinite"]),
                _num(d["full_ppl"]),
                _num(d["full_nll_mean"]),
                int(d["calibration_tokens"]),
                _num(d["seconds"]),
                _num(d["seconds_per_mask"]),
                str(d["device"]),
                d.get("dtype"),
            )
        except KeyError as err:
            raise ConfigError(
                f"{path}: no {err} (written by an older version); rerun `dvc repro score_masks`"
            ) from None


@dataclass(frozen=True)
class TaskScore:
    """One zero-shot task of an evaluation: accuracies with their standard errors over ``n`` items."""

    acc: float
    acc_stderr: float
    acc_norm: float
    acc_norm_stderr: float
    n: int


@dataclass(frozen=True)
class EvalSummary:
    """``data/metrics/eval_<which>.json``: held-out perplexity per corpus and zero-shot accuracy per task."""

    which: str
    n_layers: int
    ppl: dict[str, float]
    zero_shot: dict[str, TaskScore]
    mean_acc: float
    mean_acc_norm: float
    tokens_per_s: float
    dtype: str | None = None  # the precision it was evaluated in (None: an older file)
    lm_eval: dict[str, dict[str, float]] = field(default_factory=dict)  # lm-eval task -> its metrics

    @classmethod
    def read(cls, path: Path) -> EvalSummary:
        d = read_json(path)
        try:
            zero = {
                t: TaskScore(_num(r["acc"]), _num(r["acc_stderr"]), _num(r["acc_norm"]), _num(r["acc_norm_stderr"]),
                             int(r["n"]))
                for t, r in (d.get("zero_shot") or {}).items()
            }  # fmt: skip
            return cls(
                str(d["which"]),
                int(d["n_layers"]),
                {c: _num(v) for c, v in d["ppl"].items()},
                zero,
                _num(d["mean_acc"]),
                _num(d["mean_acc_norm"]),
                _num(d["tokens_per_s"]),
                d.get("dtype"),
                {t: {k: _num(v) for k, v in r.items()} for t, r in (d.get("lm_eval") or {}).items()},
            )
        except KeyError as err:
            which = path.stem.removeprefix("eval_")
            raise ConfigError(
                f"{path}: no {err} (written by an older version); rerun `dvc repro evaluate@{which}`"
            ) from None


@dataclass(frozen=True)
class ShapleyTable:
    """``data/shapley/shapley.json``: one contribution and standard error per layer."""

    estimator: str
    values: np.ndarray  # float[L]
    stderr: np.ndarray  # float[L]
    raw: dict = field(repr=False)

    @property
    def n_layers(self) -> int:
        return len(self.values)

    @classmethod
    def read(cls, path: Path, n_layers: int | None = None) -> ShapleyTable:
        d = read_json(path)
        layers = d.get("layers") or []
        values = np.array([_num(r["shapley"]) for r in layers], dtype=np.float64)
        stderr = np.array([_num(r["shapley_se"]) for r in layers], dtype=np.float64)
        if n_layers is not None and len(values) != n_layers:
            raise ConfigError(
                f"{path}: {len(values)} layers but the model has {n_layers}; rerun `dvc repro estimate_shapley`"
            )
        return cls(str(d.get("estimator")), values, stderr, d)


@dataclass(frozen=True)
class SelectionTable:
    """``data/select/select.json``: the set ``select`` chose per k (or a placeholder naming another method)."""

    method: str
    n_layers: int | None
    chosen: dict[int, list[int]]
    n_evaluations: int
    seconds: float
    raw: dict = field(repr=False)

    @property
    def equivalent_evaluations(self) -> float:
        """Select's own evaluations, screening ones (``select.screen_windows``) at their share of the tokens."""
        return float(self.raw.get("equivalent_evaluations", self.n_evaluations))

    def design_evaluations(self, scoring: Path) -> int:
        """score_masks' evaluations this search stood on: as select recorded them (0 when the budgeted search ran
        on its own), else those of ``scoring`` (score_masks' metrics; older tables always used them)."""
        recorded = self.raw.get("design_evaluations")
        return ScoringSummary.read(scoring).n_masks if recorded is None else int(recorded)

    @classmethod
    def read(cls, path: Path) -> SelectionTable:
        d = read_json(path)
        n = d.get("n_layers")
        chosen = _sets(d.get("chosen") or {})
        return cls(
            str(d.get("method")),
            None if n is None else int(n),
            chosen,
            int(d.get("n_evaluations", 0)),
            _num(d.get("seconds", 0.0)),
            d,
        )

    def require(self, path: Path, n_layers: int | None = None) -> SelectionTable:
        """This table, or a clear error when ``select`` did not search (for this model)."""
        if self.method != "select" or (n_layers is not None and self.n_layers != n_layers):
            raise ConfigError(
                f"{path}: no subset search for this model (written while prune.method was '{self.method}'); "
                "rerun `dvc repro select`"
            )
        return self


@dataclass(frozen=True)
class LayerTable:
    """``data/layer_scores/layer_scores.json``: a baseline criterion's scores and the set it drops per k."""

    method: str
    n_layers: int
    chosen: dict[int, list[int]]
    raw: dict = field(repr=False)

    @classmethod
    def read(cls, path: Path) -> LayerTable:
        d = read_json(path)
        return cls(str(d.get("method")), len(d.get("layers") or []), _sets(d.get("chosen") or {}), d)


def kept_mask(pruned_dir: Path) -> np.ndarray:
    """``bool[L]``: the layers ``prune`` kept (``data/pruned/pruning.json``; the repair and export stages read it)."""
    pruning = read_json(pruned_dir / "pruning.json")
    keep = np.zeros(int(pruning["n_layers_before"]), dtype=bool)  # bool[L]
    keep[pruning["kept_layers"]] = True
    return keep
