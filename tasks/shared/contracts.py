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


def _opt(x: Any) -> float | None:
    """A number that may be absent (``null``: not measured, or not finite)."""
    return None if x is None else float(x)


def _optint(x: Any) -> int | None:
    return None if x is None else int(x)


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

    @property
    def n_layers(self) -> int:
        return len(self.values)

    @classmethod
    def read(cls, path: Path, n_layers: int | None = None) -> ShapleyTable:
        """The table; with ``n_layers``, refused when it was estimated for a model of another depth."""
        d = read_json(path)
        layers = d.get("layers") or []
        try:
            values = np.array([_num(r["shapley"]) for r in layers], dtype=np.float64)
            stderr = np.array([_num(r["shapley_se"]) for r in layers], dtype=np.float64)
        except KeyError as err:
            raise ConfigError(
                f"{path}: no {err} (written by an older version); rerun `dvc repro estimate_shapley`"
            ) from None
        if n_layers is not None and len(values) != n_layers:
            raise ConfigError(
                f"{path}: {len(values)} layers but the model has {n_layers}; rerun `dvc repro estimate_shapley`"
            )
        return cls(str(d.get("estimator")), values, stderr)


@dataclass(frozen=True)
class Ranked:
    """The contribution ranking's set at one k, as select measured it."""

    dropped: list[int]
    calibration: float | None
    validation: float | None


@dataclass(frozen=True)
class ChosenSet:
    """The set select chose at one k: where it came from, its utilities, and what finding it cost."""

    dropped: list[int]
    sources: list[str]
    round: int | None
    predicted: float | None  # the surrogate's prediction before it was measured (None: the budgeted search)
    calibration: float | None
    validation: float | None
    ranking: Ranked | None  # the ranking's set at this k (the surrogate search only)
    evaluations: int | None  # the budgeted search's evaluations for this k
    layer_token_forwards: int | None
    larger_budget_may_change: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChosenSet:
        rank = d.get("ranking")
        ranked = None if rank is None else Ranked([int(i) for i in rank["dropped"]], _opt(rank.get("calibration")),
                                                  _opt(rank.get("validation")))  # fmt: skip
        return cls(
            [int(i) for i in d["dropped"]],
            [str(x) for x in d.get("sources") or []],
            _optint(d.get("round")),
            _opt(d.get("predicted")),
            _opt(d.get("calibration")),
            _opt(d.get("validation")),
            ranked,
            _optint(d.get("evaluations")),
            _optint(d.get("layer_token_forwards")),
            bool(d.get("larger_budget_may_change")),
        )


@dataclass(frozen=True)
class SelectionTable:
    """``data/select/select.json``: the set ``select`` chose per k (or a placeholder naming another method)."""

    method: str
    n_layers: int | None
    chosen: dict[int, list[int]]
    n_evaluations: int
    seconds: float
    sets: dict[int, ChosenSet] = field(default_factory=dict)  # the choice per k in full (a search only)
    strategy: str | None = None
    budget: int | None = None
    rounds: int | None = None
    n_calibration_evaluations: int | None = None
    n_validation_evaluations: int | None = None
    n_drops: list[int] = field(default_factory=list)  # the k searched
    kept_layers: int | None = None  # layers its evaluations ran, summed (its share of layer-token forwards)
    calibration_full_ppl: float | None = None
    equivalent_evaluations: float = 0.0  # its own, screening ones (select.screen_windows) at their share of tokens
    recorded_design_evaluations: int | None = None  # score_masks' evaluations it stood on, where it recorded them

    def design_evaluations(self, scoring: Path) -> int:
        """score_masks' evaluations this search stood on: as select recorded them (0 when the budgeted search ran
        on its own), else those of ``scoring`` (score_masks' metrics; older tables always used them)."""
        recorded = self.recorded_design_evaluations
        return ScoringSummary.read(scoring).n_masks if recorded is None else recorded

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SelectionTable:
        chosen = d.get("chosen") or {}
        sets = {int(k): ChosenSet.from_dict(v) for k, v in chosen.items() if isinstance(v, dict)}
        n, evaluations = d.get("n_layers"), int(d.get("n_evaluations", 0))
        return cls(
            str(d.get("method")),
            _optint(n),
            _sets(chosen),
            evaluations,
            _num(d.get("seconds", 0.0)),
            sets,
            d.get("strategy"),
            _optint(d.get("budget")),
            _optint(d.get("rounds")),
            _optint(d.get("n_calibration_evaluations")),
            _optint(d.get("n_validation_evaluations")),
            [int(k) for k in d.get("n_drops") or []],
            _optint(d.get("kept_layers")),
            _opt(d.get("calibration_full_ppl")),
            float(d.get("equivalent_evaluations", evaluations)),
            _optint(d.get("design_evaluations")),
        )

    @classmethod
    def read(cls, path: Path) -> SelectionTable:
        try:
            return cls.from_dict(read_json(path))
        except KeyError as err:
            raise ConfigError(f"{path}: no {err} (written by an older version); rerun `dvc repro select`") from None

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
    llm_evaluations: int | None = None  # what choosing its sets cost on the LLM, where the criterion records it
    ppl_after_step: list[float] = field(default_factory=list)  # SLEB: the perplexity after each removal

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerTable:
        steps = (d.get("info") or {}).get("ppl_after_step") or []
        return cls(str(d.get("method")), len(d.get("layers") or []), _sets(d.get("chosen") or {}),
                   _optint(d.get("llm_evaluations")), [_num(x) for x in steps])  # fmt: skip

    @classmethod
    def read(cls, path: Path) -> LayerTable:
        return cls.from_dict(read_json(path))


@dataclass(frozen=True)
class PruningRecord:
    """``data/pruned/pruning.json``: which layers ``prune`` removed, by which method, and what it kept."""

    method: str
    n_layers_before: int
    dropped_layers: list[int]
    kept_layers: list[int]
    parameters_before: int
    parameters_after: int
    boundary_z: float | None = None  # None: a recorded set (no standard errors)
    boundary_separated: bool | None = None
    llm_evaluations: int | None = None  # spent choosing the layers, where recorded

    @property
    def n_dropped(self) -> int:
        return len(self.dropped_layers)

    @property
    def kept_mask(self) -> np.ndarray:
        """``bool[L]``: True for the layers kept."""
        keep = np.zeros(self.n_layers_before, dtype=bool)  # bool[L]
        keep[self.kept_layers] = True
        return keep

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruningRecord:
        sep = d.get("boundary_separated")
        return cls(
            str(d["method"]),
            int(d["n_layers_before"]),
            [int(i) for i in d["dropped_layers"]],
            [int(i) for i in d["kept_layers"]],
            int(d["parameters_before"]),
            int(d["parameters_after"]),
            _opt(d.get("boundary_z")),
            None if sep is None else bool(sep),
            _optint(d.get("llm_evaluations")),
        )

    @classmethod
    def read(cls, pruned_dir: Path) -> PruningRecord:
        """The record in ``pruned_dir`` (``data/pruned``)."""
        path = pruned_dir / "pruning.json"
        try:
            return cls.from_dict(read_json(path))
        except KeyError as err:
            raise ConfigError(f"{path}: no {err} (written by an older version); rerun `dvc repro prune`") from None


def kept_mask(pruned_dir: Path) -> np.ndarray:
    """``bool[L]``: the layers ``prune`` kept (``data/pruned/pruning.json``; the repair and export stages read it)."""
    return PruningRecord.read(pruned_dir).kept_mask


@dataclass(frozen=True)
class ModelSize:
    """A model's size as a record states it: ``data/metrics/prepare_model.json`` or ``eval_<which>.json``."""

    n_layers: int
    parameters: int
    source: str | None = None  # the weights it was read from (prepare_model's record only)

    @classmethod
    def read(cls, path: Path) -> ModelSize:
        d = read_json(path)
        try:
            return cls(int(d["n_layers"]), int(d["parameters"]), d.get("source"))
        except KeyError as err:
            raise ConfigError(f"{path}: no {err} (written by an older version); rerun `dvc repro`") from None


@dataclass(frozen=True)
class RepairedRun:
    """One run of consecutive dropped layers ``[start, stop)`` the linear fit repaired (or skipped, and why)."""

    start: int
    stop: int
    reason: str | None = None  # why it was left unrepaired (skipped runs only)


@dataclass(frozen=True)
class LinearRepair:
    """The training-free part of a repair: the runs fitted (``refit`` or ``map``) and the seconds it took."""

    fit: str | None
    seconds: float
    repaired: list[RepairedRun]
    skipped: list[RepairedRun]


@dataclass(frozen=True)
class LoraRepair:
    """The LoRA healing part of a repair."""

    steps: int
    tokens: int
    seconds: float


@dataclass(frozen=True)
class RepairSummary:
    """``data/metrics/repair.json`` (and ``data/repaired/repair.json``): how the cut was repaired, which layers
    it had dropped, on what text and what it took."""

    method: str
    dropped_layers: list[int]
    parameters_added: int
    seconds: float  # the linear fit's and LoRA's, summed (0 for ``repair.method: none``)
    windows: int = 0
    text: str | None = None  # the repair windows' source (None: nothing was learnt from)
    parameters: int | None = None  # the repaired model's parameters, where recorded
    linear: LinearRepair | None = None
    lora: LoraRepair | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RepairSummary:
        lin, lora = d.get("linear") or {}, d.get("lora") or {}

        def runs(key: str) -> list[RepairedRun]:
            return [RepairedRun(int(r["start"]), int(r["stop"]), r.get("reason")) for r in lin.get(key) or []]

        linear = LinearRepair(lin.get("fit"), _num(lin["seconds"]), runs("repaired"), runs("skipped")) if lin else None
        healed = LoraRepair(int(lora["steps"]), int(lora["tokens"]), _num(lora["seconds"])) if lora else None
        return cls(
            str(d["method"]),
            sorted(int(i) for i in d.get("dropped_layers") or []),
            int(d["parameters_added"]),
            sum(_num(part.get("seconds", 0.0)) for part in (lin, lora)),
            int(d.get("windows") or 0),
            d.get("text"),
            _optint(d.get("parameters")),
            linear,
            healed,
        )

    @classmethod
    def read(cls, path: Path) -> RepairSummary:
        try:
            return cls.from_dict(read_json(path))
        except KeyError as err:
            raise ConfigError(f"{path}: no {err} (written by an older version); rerun `dvc repro repair`") from None


@dataclass(frozen=True)
class SurrogateFidelity:
    """``data/metrics/fit_surrogate.json``: how well the surrogate predicts the masks it was not trained on."""

    n_validation: int
    r2: float
    spearman: float

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SurrogateFidelity:
        held = d["validation"]
        return cls(int(d["n_validation"]), _num(held["r2"]), _num(held["spearman"]))

    @classmethod
    def read(cls, path: Path) -> SurrogateFidelity:
        try:
            return cls.from_dict(read_json(path))
        except KeyError as err:
            raise ConfigError(
                f"{path}: no {err} (written by an older version); rerun `dvc repro fit_surrogate`"
            ) from None


@dataclass(frozen=True)
class SurrogateRecord:
    """``data/surrogate/surrogate.json``'s provenance: the model and utility the surrogate was trained for."""

    model: str | None
    utility: str | None

    @classmethod
    def read(cls, directory: Path) -> SurrogateRecord:
        d = read_json(directory / "surrogate.json")
        return cls(d.get("model"), d.get("utility"))


@dataclass(frozen=True)
class CompareSummary:
    """``data/compare/compare.json``, as far as another stage reads it: how many rows were compared."""

    n_rows: int

    @classmethod
    def read(cls, path: Path) -> CompareSummary:
        """The summary; a missing file reads as nothing compared (compare is optional for the report)."""
        return cls(len(read_json(path).get("rows") or [])) if path.is_file() else cls(0)
