"""Typed readers of the cut and its repair: ``pruning.json`` and ``repair.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.shared.contracts.json_io import _num, _opt, _optint, read_record


@dataclass(frozen=True)
class TargetReached:
    """``pruning.json``'s ``target``: the budget ``prune.target`` asked for and what the removed layers reach."""

    asked: str  # e.g. "params 0.8 of the full model's"
    n_drop: int
    kept_params: int
    kept_fraction: float
    size_mb: float  # the exported folder's weights (export.dtype), MB = 10^6 bytes
    dtype: str
    predicted_speedup: float
    cost_model: str  # what the speedup is predicted from

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetReached:
        r = d["reached"]
        return cls(
            str(d["asked"]),
            int(r["n_drop"]),
            int(r["kept_params"]),
            float(r["kept_fraction"]),
            float(r["size_mb"]),
            str(d["dtype"]),
            float(r["predicted_speedup"]),
            str(d["cost_model"]),
        )

    def line(self) -> str:
        """The sentence the summary and the model card give after "Target:"."""
        return (
            f"{self.asked}; reached with {self.n_drop} layers removed: {self.kept_params:,} parameters kept "
            f"({self.kept_fraction:.1%}), {self.size_mb:.1f} MB in {self.dtype}, {self.predicted_speedup:.2f}x "
            f"tokens/s predicted ({self.cost_model})."
        )


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
    target: TargetReached | None = None  # prune.target's budget and what was reached; None: n_drop / ratio

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
            TargetReached.from_dict(d["target"]) if d.get("target") else None,
        )

    @classmethod
    def read(cls, pruned_dir: Path) -> PruningRecord:
        """The record in ``pruned_dir`` (``data/pruned``)."""
        return read_record(pruned_dir / "pruning.json", cls.from_dict, "prune")


def kept_mask(pruned_dir: Path) -> np.ndarray:
    """``bool[L]``: the layers ``prune`` kept (``data/pruned/pruning.json``; the repair and export stages read it)."""
    return PruningRecord.read(pruned_dir).kept_mask


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
        return read_record(path, cls.from_dict, "repair")
