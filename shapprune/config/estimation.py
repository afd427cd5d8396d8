"""The contribution estimate: ``sample_masks``, ``score_masks``, ``fit_surrogate``, ``estimate_shapley``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from shapprune.config.section import ConfigError, _Section
from shapprune.sampling import strata_from_fractions


class SampleMasks(_Section):
    """The masks to score on the LLM: the design of ``estimate_shapley.estimator`` with ``n_masks`` evaluations.

    ``keep_fractions`` / ``strata`` are the paper's strata, used by the ``paper`` estimator.
    """

    keep_fractions: list[float]
    strata: list[int] | None
    n_masks: int = Field(ge=1, description="LLM evaluations (the estimator's budget)")

    @field_validator("keep_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < f <= 1 for f in v):
            raise ValueError("every keep fraction must be in (0, 1]")
        return v

    def resolve_strata(self, n_layers: int) -> list[int]:
        """Kept-layer counts for a model with ``n_layers`` layers."""
        if self.strata is not None:
            bad = [k for k in self.strata if not 1 <= k <= n_layers]
            if bad or not self.strata:
                raise ConfigError(
                    f"sample_masks.strata: {bad or 'empty'} outside [1, {n_layers}] for this {n_layers}-layer model; "
                    "use kept-layer counts between 1 and the layer count, or keep_fractions"
                )
            return list(self.strata)
        return strata_from_fractions(n_layers, self.keep_fractions)


class ScoreMasks(_Section):
    utility: Literal["ppl_ratio", "neg_log_ppl"]
    batch_size: int = Field(ge=1)
    prefix_reuse: bool
    cache_mib: float = Field(ge=0)
    chunk_size: int = Field(ge=1)
    workers: int = Field(ge=0, description="0 = score in this process; N = a local Dask cluster of N workers")
    scheduler: str | None
    stop: Literal["decision", "cap"] = Field(
        description="decision: score in rounds until the choice at prune's k is resolved (shapprune/rounds.py), "
        "capped by sample_masks.n_masks; cap: every mask of the design (the paper)"
    )
    round_size: int = Field(ge=1, description="design masks per round (stop: decision)")
    patience: int = Field(ge=1, description="rounds in a row the surrogate must agree with the LLM (stop: decision)")
    tolerance: float = Field(ge=0, description="relative: a top proposal within it of the best measured set agrees")
    proposals: int = Field(ge=1, description="sets proposed and scored per round: the top one, then runners-up")


class FitSurrogate(_Section):
    hidden_mult: float = Field(gt=0)
    depth: int = Field(ge=1)
    output: Literal["sigmoid", "linear"]
    optimizer: Literal["sgd", "adam"]
    lr: float = Field(gt=0)
    momentum: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    step_size: int = Field(ge=1)
    gamma: float = Field(gt=0, le=1)
    val_fraction: float = Field(ge=0, lt=1)
    nonfinite: Literal["exclude", "clip"]

    def mlp_options(self) -> dict:
        """The MLP's architecture and training recipe: what every surrogate MLP of the pipeline is trained with."""
        return self.model_dump(exclude={"val_fraction", "nonfinite"})


class EstimateShapley(_Section):
    """Which contribution estimator runs on the scored masks, and its options (see ``shapprune.estimators``)."""

    estimator: Literal["paper", "surrogate_cv", "surrogate_shapley", "svarm", "permutation", "stratified"]
    surrogate: Literal["auto", "ridge", "mlp", "gbr", "quadratic", "gp"]
    folds: int = Field(ge=2, description="cross-fitting folds (surrogate_cv) / jackknife folds (paper)")
    paired: bool
    allocation: Literal["neyman", "uniform"]
    n_samples: int = Field(ge=2, description="surrogate evaluations per readout")
    boundary_z: float = Field(ge=0, description="warn when the pruning boundary is closer than this many s.e.")

    def resolved_surrogate(self) -> str:
        """``auto``: the paper's MLP for ``paper``, cross-validated ridge otherwise."""
        if self.surrogate != "auto":
            return self.surrogate
        return "mlp" if self.estimator == "paper" else "ridge"
