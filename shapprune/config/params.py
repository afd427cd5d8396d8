"""The whole ``params.yaml``: every section, the rules across sections, and loading with one-line errors."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError, model_validator

from shapprune.config.estimation import EstimateShapley, FitSurrogate, SampleMasks, ScoreMasks
from shapprune.config.evaluation import Compare, Evaluate, Export, Report
from shapprune.config.model import Base, PrepareData, PrepareModel
from shapprune.config.section import ConfigError, _Section
from shapprune.config.selection import Prune, Repair, ScoreLayers, Select


class Params(_Section):
    base: Base
    prepare_model: PrepareModel
    prepare_data: PrepareData
    sample_masks: SampleMasks
    score_masks: ScoreMasks
    fit_surrogate: FitSurrogate
    estimate_shapley: EstimateShapley
    select: Select
    score_layers: ScoreLayers
    prune: Prune
    repair: Repair
    evaluate: Evaluate
    compare: Compare
    report: Report
    export: Export

    @model_validator(mode="after")
    def _cross(self) -> Params:
        if self.score_masks.utility == "neg_log_ppl" and self.fit_surrogate.output == "sigmoid":
            raise ValueError(
                "fit_surrogate.output: a sigmoid cannot fit neg_log_ppl utilities; set fit_surrogate.output: linear"
            )
        if self.score_masks.stop == "decision" and self.estimate_shapley.estimator != "paper":
            raise ValueError(
                f"score_masks.stop: decision reads the paper estimator's design in part; with estimate_shapley."
                f"estimator: {self.estimate_shapley.estimator} set score_masks.stop: cap"
            )
        ratio, limit = self.prune.ratio, self.score_layers.max_drop_ratio
        if self.prune.method not in ("shapley", "select") and ratio is not None and ratio > limit:
            raise ValueError(
                f"prune.ratio: {ratio:g} is past score_layers.max_drop_ratio ({limit:g}), the largest share of the "
                f"layers for which score_layers records {self.prune.method}'s sets; set prune.ratio to {limit:g} "
                "or less, or raise score_layers.max_drop_ratio"
            )
        baseline = self.prune.method not in ("shapley", "select")
        self.prune.bind(limit if baseline else None, self.export.dtype)  # what a prune.target's k depends on
        return self


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "params"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key; remove it or fix its spelling"
        elif e["type"] == "missing":
            msg = "missing; add it (the project's params.yaml lists every key with its default value)"
        if not e["loc"] and e["type"] == "value_error":  # a rule across sections: its message names the keys
            lines.append(f"params.yaml: {msg}")
        else:
            lines.append(f"params.yaml: {key}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: dict) -> Params:
    """Validate a params mapping; raise :class:`ConfigError` with one line per problem."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError(_format(err)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: not found; run from the project root or pass the path to params.yaml")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML ({str(err).splitlines()[0]}); fix the syntax") from None
    return parse_params(raw)
