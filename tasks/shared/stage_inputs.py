"""Which params each pipeline stage reads: declared once, and what DVC tracks and MLflow logs for that stage.

``STAGE_PARAMS[stage].tracked`` is exactly the ``params:`` list of the stage in ``dvc.yaml`` and exactly the
params its MLflow run logs (``tests/tasks/shared/test_stage_inputs.py`` compares the three); ``runtime`` params only
change how a stage runs and are logged as tags. A stage reads params through :class:`ParamsView`, which
refuses anything it did not declare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from shapprune.config import Params


@dataclass(frozen=True)
class StageInputs:
    """The params one stage reads: ``tracked`` ones change its outputs (``dvc.yaml`` lists exactly these and
    the stage's MLflow run logs them as params); ``runtime`` ones only change how it runs (threads, workers,
    caches, batch sizes that leave results identical), logged as MLflow tags and not tracked by DVC."""

    tracked: tuple[str, ...]
    runtime: tuple[str, ...] = ()


_MODEL = ("base.model", "base.device", "base.dtype")
# which held-out corpora are in-domain: what they are and what feeds calibration and repair (report, export)
_DOMAINS = ("prepare_data.calibration_source", "prepare_data.eval_corpora", "prepare_data.repair_mix")
STAGE_PARAMS: dict[str, StageInputs] = {
    "prepare_model": StageInputs(("base.model", "base.revision")),
    "prepare_data": StageInputs(("base.seed", "prepare_data")),
    "sample_masks": StageInputs(("base.seed", "sample_masks", "estimate_shapley")),
    "score_masks": StageInputs(
        (
            *_MODEL,
            "score_masks.utility",
            "score_masks.batch_size",
            # the rounds (score_masks.stop: decision): when they stop, and the proposals' surrogate and search
            "score_masks.stop",
            "score_masks.round_size",
            "score_masks.patience",
            "score_masks.proposals",
            "score_masks.tolerance",
            "sample_masks.n_masks",
            "base.seed",
            "prune.n_drop",
            "prune.ratio",
            "prune.target",
            "fit_surrogate",
            "select.surrogate",
            "select.beam_width",
        ),
        (
            "base.threads",
            "score_masks.prefix_reuse",
            "score_masks.cache_mib",
            "score_masks.chunk_size",
            "score_masks.workers",
            "score_masks.scheduler",
        ),
    ),
    "fit_surrogate": StageInputs(("base.seed", "base.model", "score_masks.utility", "fit_surrogate")),
    "estimate_shapley": StageInputs(
        (
            "base.seed",
            "base.model",
            "sample_masks",
            "score_masks.utility",
            "estimate_shapley",
            "fit_surrogate",
            "prune.n_drop",
            "prune.ratio",
            "prune.target",
        )
    ),
    "select": StageInputs(
        (
            "base.seed",
            *_MODEL,
            "score_masks.utility",
            "score_masks.batch_size",
            "fit_surrogate",
            "select",
            "prune.method",
            "prune.n_drop",
            "prune.ratio",
            "prune.target",
            "compare.methods",
            "compare.ratios",
            "repair.linear_windows",
            "repair.ridge",
            "repair.fit",
            "repair.loss",
        ),
        ("base.threads", "score_masks.prefix_reuse", "score_masks.cache_mib"),
    ),
    "score_layers": StageInputs(("base.seed", *_MODEL, "prune.method", "score_layers"), ("base.threads",)),
    "prune": StageInputs(("prune", "estimate_shapley.boundary_z", "export.dtype")),
    "repair": StageInputs(("base.seed", "base.device", "repair"), ("base.threads",)),
    "evaluate": StageInputs(("base.seed", *_MODEL, "prepare_data.eval_corpora", "evaluate"), ("base.threads",)),
    "compare": StageInputs(
        (
            "base.seed",
            *_MODEL,
            "prepare_data.eval_corpora",
            "evaluate.tasks",
            "evaluate.dtype",
            "score_layers",
            "compare",
            "repair.linear_windows",
            "repair.ridge",
            "repair.fit",
            "repair.loss",
        ),
        ("base.threads",),
    ),
    "report": StageInputs(_DOMAINS),
    "export": StageInputs(("base.model", "export", *_DOMAINS), ("base.threads",)),
}


class ParamsView:
    """What one stage may read of :class:`Params`: its declared sections and keys, nothing else.

    Reading an undeclared key raises, so a stage cannot depend on a value that DVC does not track for it.
    """

    def __init__(self, params: BaseModel, allowed: Sequence[str], where: str, prefix: str = "") -> None:
        self._params, self._allowed, self._where, self._prefix = params, tuple(allowed), where, prefix

    def __getattr__(self, name: str) -> object:
        value = getattr(self._params, name)
        if callable(value) or name.startswith("_"):
            return value
        key = f"{self._prefix}{name}"
        if key in self._allowed or any(key.startswith(a + ".") for a in self._allowed):
            return value
        below = [a for a in self._allowed if a.startswith(key + ".")]
        if below and isinstance(value, BaseModel):
            return ParamsView(value, below, self._where, key + ".")
        raise AttributeError(
            f"stage {self._where} reads params '{key}' but does not declare it; add it to "
            f"STAGE_PARAMS['{self._where}'] in tasks/shared/stage_inputs.py (tracked: also to its params in dvc.yaml)"
        )


def declared(params: Params, keys: Sequence[str]) -> dict[str, object]:
    """``{"score_masks.utility": "ppl_ratio", ...}`` for the given keys (whole sections flattened)."""
    out: dict[str, object] = {}
    for key in keys:
        value: object = params
        for part in key.split("."):
            value = getattr(value, part)
        if isinstance(value, BaseModel):
            out |= {f"{key}.{k}": v for k, v in value.model_dump(mode="json").items()}
        else:
            out[key] = value
    return out
