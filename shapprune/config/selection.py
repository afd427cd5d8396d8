"""Which layers go and how the cut is healed: ``score_layers``, ``select``, ``prune``, ``repair``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from shapprune.config.names import PRUNE_METHODS
from shapprune.config.section import ConfigError, _Section
from shapprune.targets import (
    DTYPE_BYTES,
    CostModel,
    InfeasibleTarget,
    ModelStructure,
    Reached,
    Target,
    n_drop_for,
    reached,
)


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
    budget: float = Field(
        gt=0,
        description="LLM evaluations select makes itself (surrogate: verification; budgeted: all of them): a "
        "count, or a fraction below 1 of what SLEB spends to reach the largest k searched",
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

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: float) -> float:
        if v >= 1 and v != int(v):
            raise ValueError(f"{v:g}: give a whole number of evaluations, or a fraction below 1 of SLEB's")
        return v

    def evaluations(self, n_layers: int, ks: Sequence[int]) -> int:
        """The budget in LLM evaluations for searching ``ks`` on ``n_layers`` layers (a fraction: of SLEB's
        evaluations to the largest of them, rounded up; at least one per k)."""
        if self.budget >= 1:
            return int(self.budget)
        from shapprune.baselines.cost import sleb_cost  # here, not at the top: the config module stays torch-free

        return max(len(set(ks)), math.ceil(self.budget * sleb_cost(n_layers, max(ks)) - 1e-9))

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


class PruneTarget(_Section):
    """A budget that sets prune's k instead of ``n_drop`` / ``ratio``: exactly one of ``params``, ``size_mb``,
    ``speedup`` (:mod:`shapprune.targets`). The keys left out are null: a target names only its own."""

    params: float | None = Field(
        None, gt=0, description="parameters kept, at most: a count, or a fraction of the full model's in (0, 1)"
    )
    size_mb: float | None = Field(None, gt=0, description="the shipped weights, at most, in MB (10^6 bytes)")
    file: Literal["hf"] | None = Field(
        None, description="with size_mb: hf, the exported folder's safetensors in export.dtype"
    )
    speedup: float | None = Field(None, gt=1, description="predicted tokens/s of the pruned over the full model")
    layer_cost: float | None = Field(
        None,
        gt=0,
        description="with speedup: one layer's time over the non-layer parts' (pruning.json's measured "
        "layer_cost); null: from the matrix multiplies per token",
    )

    @model_validator(mode="after")
    def _one(self) -> PruneTarget:
        given = [k for k in ("params", "size_mb", "speedup") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of params, size_mb and speedup, e.g. {params: 0.8}, {size_mb: 200, file: hf} "
                "or {speedup: 1.2}"
            )
        if (self.size_mb is None) != (self.file is None):
            raise ValueError("size_mb takes file: hf (the exported folder's safetensors), and only size_mb does")
        if self.layer_cost is not None and self.speedup is None:
            raise ValueError("layer_cost goes with speedup only; remove it")
        if self.params is not None and self.params >= 1 and self.params != int(self.params):
            raise ValueError(f"params {self.params:g}: give a whole number of parameters, or a fraction below 1")
        return self

    def target(self) -> Target:
        if self.params is not None:
            return Target("params", self.params)
        if self.size_mb is not None:
            return Target("size_mb", self.size_mb, self.file or "hf")
        return Target("speedup", self.speedup)  # type: ignore[arg-type]


class Prune(_Section):
    method: str
    n_drop: int | None = Field(ge=1)
    ratio: float | None = Field(gt=0, lt=1)
    target: PruneTarget | None = Field(
        description="a budget instead of n_drop / ratio: {params: ...}, {size_mb: ..., file: hf} or {speedup: ...}"
    )
    _max_drop_ratio: float | None = PrivateAttr(None)  # score_layers.max_drop_ratio for a baseline (Params binds)
    _bytes_per_param: int = PrivateAttr(2)  # export.dtype's (Params binds it)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in PRUNE_METHODS:
            raise ValueError(f"unknown method '{v}'; choose from {', '.join(PRUNE_METHODS)}")
        return v

    @model_validator(mode="after")
    def _one(self) -> Prune:
        if sum(x is not None for x in (self.n_drop, self.ratio, self.target)) != 1:
            raise ValueError("set exactly one of n_drop, ratio and target (the others null)")
        return self

    def bind(self, max_drop_ratio: float | None, export_dtype: str) -> None:
        """What a target's k also depends on: the baseline's recorded sets (``score_layers.max_drop_ratio``,
        None for shapley and select) and the exported dtype's bytes per parameter (``export.dtype``)."""
        self._max_drop_ratio = max_drop_ratio
        self._bytes_per_param = DTYPE_BYTES[export_dtype]

    def resolve_n_drop(self, n_layers: int, structure: ModelStructure | None = None) -> int:
        """Number of layers to remove from a model with ``n_layers`` layers: the one place prune's k is derived.

        A ``target`` needs the model's exact parameter counts: ``structure``, or the saved folder that
        ``n_layers`` counts (a :class:`~shapprune.targets.LayerCount`, as ``saved_layer_count`` returns).
        """
        if self.target is not None:
            return self._target_n_drop(n_layers, structure)
        k = self.n_drop if self.n_drop is not None else int(round(self.ratio * n_layers))  # type: ignore[operator]
        if not 1 <= k < n_layers:
            raise ConfigError(
                f"prune: removing {k} of {n_layers} layers is not possible; choose n_drop in [1, {n_layers - 1}] "
                f"or a ratio in ({0.5 / n_layers:.3f}, {1 - 0.5 / n_layers:.3f})"
            )
        return k

    def cost_model(self, structure: ModelStructure) -> CostModel:
        """The speedup's cost model: the target's measured ``layer_cost``, else the matrix multiplies per token."""
        cost = self.target.layer_cost if self.target is not None else None
        return CostModel.from_flops(structure) if cost is None else CostModel.uniform(cost, structure.n_layers)

    def reached(self, structure: ModelStructure, dropped: Sequence[int]) -> Reached:
        """What removing ``dropped`` reaches: kept parameters, the exported size, the predicted speedup."""
        return reached(structure, dropped, self._bytes_per_param, self.cost_model(structure))

    def _target_n_drop(self, n_layers: int, structure: ModelStructure | None) -> int:
        assert self.target is not None
        try:
            structure = structure or getattr(n_layers, "structure", None)
        except (OSError, ValueError) as err:
            raise ConfigError(f"prune.target: cannot count the model's parameters ({err})") from None
        if structure is None:
            raise ConfigError("prune.target: needs the saved model's parameter counts; run `dvc repro prepare_model`")
        if structure.n_layers != n_layers:
            raise ConfigError(f"prune.target: the saved model has {structure.n_layers} layers, not {n_layers}")
        limit, max_k = "", None
        if self._max_drop_ratio is not None:
            max_k = max(1, min(n_layers - 1, int(round(self._max_drop_ratio * n_layers))))
            limit = f"score_layers.max_drop_ratio {self._max_drop_ratio:g} lets {self.method} record"
        try:
            return n_drop_for(
                self.target.target(), structure, self._bytes_per_param, self.cost_model(structure), max_k, limit
            )
        except InfeasibleTarget as err:
            raise ConfigError(f"prune.target: {err}") from None


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
