"""Which layers go and how the cut is healed: ``score_layers``, ``select``, ``prune``, ``repair``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator, model_validator

from shapprune.config.names import PRUNE_METHODS
from shapprune.config.section import ConfigError, _Section


class ScoreLayers(_Section):
    """Options of the baseline criteria (used when ``prune.method`` is not ``shapley``)."""

    batch_size: int = Field(ge=1)
    cache_mib: float = Field(ge=0, description="prefix-reuse cache for ppl / sleb / oracle")
    max_drop_ratio: float = Field(gt=0, lt=1, description="layer sets are computed for k = 1..round(ratio*L)")
    oracle_max_subsets: int = Field(ge=1, description="oracle enumerates C(L, k) subsets only up to this")
    taylor_reduce: Literal["element", "block"]
    taylor_protect_first: int = Field(ge=0)
    taylor_protect_last: int = Field(ge=0)
    iterative_estimator: Literal["surrogate_cv", "svarm", "permutation", "stratified", "surrogate_shapley"]
    iterative_budget: int = Field(ge=8, description="LLM evaluations per round of iterative_shapley")
    iterative_step: int = Field(ge=1, description="layers removed per round of iterative_shapley")

    def criterion_options(self) -> dict:
        """Keyword options for ``shapprune.baselines.layer_scores`` (each criterion takes the ones it knows)."""
        return {
            "batch_size": self.batch_size,
            "cache_mib": self.cache_mib,
            "max_subsets": self.oracle_max_subsets,
            "reduce": self.taylor_reduce,
            "protect_first": self.taylor_protect_first,
            "protect_last": self.taylor_protect_last,
            "estimator": self.iterative_estimator,
            "budget_per_round": self.iterative_budget,
            "step": self.iterative_step,
        }

    def n_drops(self, n_layers: int) -> list[int]:
        """Numbers of removed layers for which every criterion records its set."""
        return list(range(1, max(1, min(n_layers - 1, int(round(self.max_drop_ratio * n_layers)))) + 1))


class Select(_Section):
    """Subset search (``prune.method: select``): which ``k`` to search, how widely, and the LLM budget to verify."""

    n_drops: list[int] | None = Field(description="numbers of layers dropped to search; null = prune's k and compare's")
    strategy: Literal["surrogate", "budgeted"] = Field(
        description="surrogate: search on score_masks' surrogate, verify on the LLM; budgeted: block scan, "
        "leave-one-out and swap moves on the LLM alone, every evaluation within select.budget"
    )
    budget: int = Field(
        ge=1, description="LLM evaluations select makes itself (surrogate: verification; budgeted: all of them)"
    )
    reuse_scores: bool = Field(description="budgeted: masks score_masks measured are free, known values")
    screen_windows: int = Field(
        ge=0,
        description="budgeted: screen on this many calibration windows (each evaluation paid at their share of the "
        "tokens), verify the best on all of them; 0 = no screen",
    )
    per_k_candidates: int = Field(ge=1, description="proposals per search source, k and round")
    beam_width: int = Field(ge=1)
    n_blocks: int = Field(ge=0, description="contiguous blocks of k layers proposed per k and round")
    rounds: int = Field(ge=1, description="verify, refit the surrogate on what was verified, search again")
    surrogate: Literal["mlp", "ridge", "gbr", "quadratic", "gp"]
    repair: Literal["none", "linear"] = Field(
        description="verify candidates as pruned (none) or after the linear repair of each (repair.ridge)"
    )

    @field_validator("n_drops")
    @classmethod
    def _n_drops(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or min(v) < 1):
            raise ValueError("list numbers of dropped layers >= 1, or null for prune's n_drop / ratio")
        return v

    def resolve_n_drops(self, n_layers: int, prune_k: int, compare_ks: Sequence[int] = ()) -> list[int]:
        """The ``k`` to search on a model with ``n_layers`` layers.

        ``prune_k``: what ``prune`` will drop; ``compare_ks``: what ``compare`` reports (searched too when null).
        """
        ks = sorted(set(self.n_drops)) if self.n_drops is not None else sorted({prune_k, *compare_ks})
        if max(ks) >= n_layers:
            raise ConfigError(
                f"select.n_drops: {max(ks)} layers cannot be dropped from a {n_layers}-layer model; "
                f"use values in [1, {n_layers - 1}] or null"
            )
        return ks


class Prune(_Section):
    method: str
    n_drop: int | None = Field(ge=1)
    ratio: float | None = Field(gt=0, lt=1)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in PRUNE_METHODS:
            raise ValueError(f"unknown method '{v}'; choose from {', '.join(PRUNE_METHODS)}")
        return v

    @model_validator(mode="after")
    def _one(self) -> Prune:
        if (self.n_drop is None) == (self.ratio is None):
            raise ValueError("set exactly one of n_drop and ratio (the other null)")
        return self

    def resolve_n_drop(self, n_layers: int) -> int:
        """Number of layers to remove from a model with ``n_layers`` layers."""
        k = self.n_drop if self.n_drop is not None else int(round(self.ratio * n_layers))  # type: ignore[operator]
        if not 1 <= k < n_layers:
            raise ConfigError(
                f"prune: removing {k} of {n_layers} layers is not possible; choose n_drop in [1, {n_layers - 1}] "
                f"or a ratio in ({0.5 / n_layers:.3f}, {1 - 0.5 / n_layers:.3f})"
            )
        return k


class Repair(_Section):
    """Heal the pruned model: a training-free linear map per run of dropped layers, LoRA healing, or both."""

    method: Literal["none", "linear", "lora", "linear+lora"]
    linear_windows: int | None = Field(ge=1, description="repair windows the linear fit uses; null = all")
    ridge: float = Field(ge=0, description="shrinks each fit towards plain pruning")
    loss: Literal["lstsq", "cosine"]
    fit: Literal["map", "refit"] = Field(description="map: a d x d map on the seam's output; refit: the projection")
    lora_steps: int = Field(ge=1)
    lora_batch_size: int = Field(ge=1)
    lora_r: int = Field(ge=1)
    lora_alpha: int = Field(ge=1)
    lora_lr: float = Field(gt=0)
    lora_loss: Literal["ce", "kd"] = Field(
        description="ce: the causal-LM loss on the windows; kd: distil the full model's next-token distribution"
    )
    checkpoint_every: int = Field(ge=1, description="LoRA steps between checkpoints (a killed run resumes)")

    @property
    def linear(self) -> bool:
        return self.method in ("linear", "linear+lora")

    @property
    def lora(self) -> bool:
        return self.method in ("lora", "linear+lora")
