"""``params.yaml`` schema, validated once at the edge; one section per pipeline stage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shapprune.baselines.registry import METHODS
from shapprune.evaluation.zero_shot import TASKS
from shapprune.sampling import strata_from_fractions


class ConfigError(ValueError):
    """Invalid params: one line per problem, each naming the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Base(_Section):
    seed: int = Field(ge=0)
    model: str
    revision: str | None = Field(description="hub ids only: the commit, tag or branch to load; null = main")
    device: str
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    threads: int = Field(ge=0, description="torch CPU threads; 0 keeps torch's default")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "mps", "map") and not v.startswith("cuda"):
            raise ValueError("use auto, cpu, cuda, cuda:N or map (the layers spread over every GPU)")
        return v


class PrepareModel(_Section):
    pass


class PrepareData(_Section):
    calibration_source: str
    eval_corpora: dict[str, str]
    seq_len: int = Field(ge=8)
    calibration_windows: int = Field(ge=1)
    validation_windows: int = Field(ge=0)
    repair_windows: int = Field(ge=0, description="calibration-source windows for the repair stage's fit")
    eval_windows: int = Field(ge=1)
    calibration_fraction: float = Field(gt=0, lt=1)
    validation_fraction: float = Field(ge=0, lt=1)
    add_bos: Literal["auto", True, False]

    @model_validator(mode="after")
    def _fractions(self) -> PrepareData:
        if self.calibration_fraction + self.validation_fraction >= 1:
            raise ValueError("calibration_fraction + validation_fraction must leave room for held-out text (< 1)")
        if not self.eval_corpora:
            raise ValueError("eval_corpora is empty; name at least one corpus")
        return self


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
        if v not in METHODS:
            raise ValueError(f"unknown method '{v}'; choose from {', '.join(METHODS)}")
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
    checkpoint_every: int = Field(ge=1, description="LoRA steps between checkpoints (a killed run resumes)")

    @property
    def linear(self) -> bool:
        return self.method in ("linear", "linear+lora")

    @property
    def lora(self) -> bool:
        return self.method in ("lora", "linear+lora")


def _all_items(v: object) -> object:
    """``n_items: all`` is the whole task set (stored as None, as ``null`` is)."""
    if isinstance(v, str):
        if v != "all":
            raise ValueError(f"'{v}' is not a number of items; give one (e.g. 100) or all")
        return None
    return v


class Evaluate(_Section):
    """Held-out perplexity and zero-shot accuracy of a model; ``compare`` scores its variants the same way."""

    tasks: list[str]
    n_items: int | None = Field(ge=1, description="zero-shot items per task; all (or null) = the whole task set")
    batch_size: int = Field(ge=1)
    dtype: Literal["float32", "base", "bfloat16", "float16"] = Field(
        description="precision of the evaluation: float32 (results independent of batching) or base (base.dtype)"
    )

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
        return v

    @field_validator("n_items", mode="before")
    @classmethod
    def _n_items(cls, v: object) -> object:
        return _all_items(v)


class Compare(_Section):
    """Every method at several pruning ratios on held-out text: the table, plots and one MLflow run per cell."""

    methods: list[str]
    ratios: list[float] = Field(description="fractions of layers removed; k = round(ratio * L)")
    eval_windows: int | None = Field(ge=1, description="held-out windows per corpus; null = all of them")
    n_items: int | None = Field(ge=1, description="zero-shot items per task (evaluate.tasks); all (or null) = all")

    @field_validator("n_items", mode="before")
    @classmethod
    def _n_items(cls, v: object) -> object:
        return _all_items(v)

    batch_size: int = Field(ge=1)
    cache_mib: float = Field(ge=0, description="prefix-reuse cache for the held-out perplexities")
    repairs: list[Literal["none", "linear"]] = Field(
        min_length=1, description="every set is measured as pruned (none) and after each repair listed"
    )
    bootstrap: int = Field(ge=100, description="paired bootstrap resamples behind each difference's 95 % interval")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)} (or [] to skip)")
        return list(dict.fromkeys(v))

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        if not v or not all(0 < r < 1 for r in v):
            raise ValueError("list fractions of layers to remove, each in (0, 1)")
        return v

    def resolve_n_drops(self, n_layers: int) -> list[int]:
        """Distinct numbers of removed layers, each in [1, L - 1]."""
        return sorted({min(n_layers - 1, max(1, int(round(r * n_layers)))) for r in self.ratios})


class Report(_Section):
    pass


class Export(_Section):
    """The shippable model: the repaired weights in ``dtype`` with a card, a GGUF file, an MLflow registry entry."""

    dtype: Literal["bfloat16", "float16", "float32"] = Field(description="precision of the saved HF folder")
    gguf: Literal["auto", "true", "false"] = Field(description="auto: write model.gguf when base.model is a GGUF")
    base_model: str | None = Field(description="the card's base_model (the source's hub id); null = base.model")
    registered_name: str | None = Field(description="MLflow registry name; null = shapprune-<base_model's name>")
    mlflow_max_mb: float = Field(ge=0, description="larger exports are logged by reference and not registered")
    check_windows: int = Field(ge=1, description="validation windows on which each shipped file is checked")

    @field_validator("gguf", mode="before")
    @classmethod
    def _gguf(cls, v: object) -> object:
        return str(v).lower() if isinstance(v, bool) else v  # YAML's true/false, as the strings the schema lists


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
