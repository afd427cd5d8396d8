"""Typed readers of the JSON artifacts that cross a stage boundary, and the one strict JSON writer.

Each artifact that one stage writes and another reads has a dataclass here with a ``read`` that checks it
and names the stage to rerun when it is missing or stale; no stage reads another's JSON by string key.
Non-finite floats are written as ``null`` (strict JSON) and read back as ``nan``.
"""

from __future__ import annotations

from tasks.shared.contracts.choices import ChosenSet, LayerTable, Ranked, SelectionTable, ShapleyTable
from tasks.shared.contracts.cuts import (
    LinearRepair,
    LoraRepair,
    PruningRecord,
    RepairedRun,
    RepairSummary,
    TargetReached,
    kept_mask,
)
from tasks.shared.contracts.json_io import read_json, strict, write_json
from tasks.shared.contracts.measures import (
    CompareSummary,
    EvalSummary,
    ModelSize,
    ScoringSummary,
    SurrogateFidelity,
    SurrogateRecord,
    TaskScore,
)

__all__ = [
    "ChosenSet",
    "CompareSummary",
    "EvalSummary",
    "LayerTable",
    "LinearRepair",
    "LoraRepair",
    "ModelSize",
    "PruningRecord",
    "Ranked",
    "RepairSummary",
    "RepairedRun",
    "ScoringSummary",
    "SelectionTable",
    "ShapleyTable",
    "SurrogateFidelity",
    "SurrogateRecord",
    "TargetReached",
    "TaskScore",
    "kept_mask",
    "read_json",
    "strict",
    "write_json",
]
