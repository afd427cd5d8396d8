"""Repair text for the benches: the stored repair windows, or a ``prepare_data.repair_mix`` drawn in-process.

``calibration`` names ``data/windows/repair.parquet``; a mix is written ``source:share+source:share`` (e.g.
``wiki_extracts:0.5+coqa_stories:0.5``) and drawn exactly as ``prepare_data`` would draw it with that
``repair_mix``; the held-out windows drawn beside it are checked equal to the stored ones, so every row of
a bench is measured on the same text.
"""

from __future__ import annotations

import numpy as np
from transformers import AutoTokenizer

from shapprune.config import PrepareData
from shapprune.data import WindowPlan, draw_splits, load_documents
from tasks.shared.artifacts import read_windows
from tasks.shared.paths import Paths

CALIBRATION = "calibration"


def parse_mix(spec: str) -> dict[str, float]:
    """``wiki_extracts:0.5+coqa_stories:0.5`` -> ``{"wiki_extracts": 0.5, "coqa_stories": 0.5}``."""
    try:
        return {src: float(share) for src, share in (part.split(":") for part in spec.split("+"))}
    except ValueError:
        raise SystemExit(f"repair text: cannot read {spec!r}; write source:share+source:share") from None


def repair_text(paths: Paths, params, spec: str) -> np.ndarray:
    """The repair windows ``int64[n, T]`` that ``spec`` names (see the module docstring)."""
    if spec == CALIBRATION:
        return read_windows(paths.repair_windows)
    fields = params.prepare_data.model_dump() | {"repair_mix": parse_mix(spec)}
    cfg = PrepareData.model_validate(fields)  # the pipeline's own checks: no held-out corpus in a mix
    plan = WindowPlan(**cfg.model_dump(include=set(WindowPlan.__dataclass_fields__)))
    docs = {s: load_documents(s) for s in cfg.sources()}
    calib, held_out, _ = draw_splits(plan, docs, AutoTokenizer.from_pretrained(paths.model), params.base.seed)
    for role, windows in held_out.items():  # the mix moves no held-out window
        np.testing.assert_array_equal(windows, read_windows(paths.eval_windows(role)), err_msg=role)
    return calib["repair"]


def slug(spec: str) -> str:
    """A file-name-safe form of ``spec`` (LoRA checkpoint folders)."""
    return "".join(c if c.isalnum() else "_" for c in spec)
