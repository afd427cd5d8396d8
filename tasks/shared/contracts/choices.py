"""Typed readers of the layer choices: the Shapley table, select's sets, a baseline's table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shapprune.config import ConfigError
from tasks.shared.contracts.json_io import _num, _opt, _optint, _sets, read_json, read_record
from tasks.shared.contracts.measures import ScoringSummary


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
        return read_record(path, cls.from_dict, "select")

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
