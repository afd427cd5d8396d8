"""What is measured and shipped: ``evaluate``, ``compare``, ``report``, ``export``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from shapprune.config.names import PRUNE_METHODS, ZERO_SHOT_TASKS
from shapprune.config.section import ItemCount, _Section


class Evaluate(_Section):
    """Held-out perplexity and zero-shot accuracy of a model; ``compare`` scores its variants the same way."""

    tasks: list[str]
    n_items: ItemCount = Field(ge=1, description="zero-shot items per task; all (or null) = the whole task set")
    batch_size: int = Field(ge=1)
    dtype: Literal["float32", "float64", "base", "bfloat16", "float16"] = Field(
        description="precision of the evaluation: float32 (batch drift ~3e-5 nats), float64 (under 1e-5, ~2x "
        "float32's time) or base (base.dtype)"
    )

    lm_eval_tasks: list[str] = Field(
        description="other lm-eval tasks or groups (mmlu, lambada_openai, ...) run by lm-eval itself on the same "
        "model, n_items documents each (lm-eval's limit: the first ones); most need internet for their data"
    )

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in ZERO_SHOT_TASKS]
        if unknown:
            raise ValueError(
                f"unknown task(s) {unknown}; choose from {', '.join(ZERO_SHOT_TASKS)} "
                "(lm-eval's other tasks go in evaluate.lm_eval_tasks)"
            )
        return v

    @field_validator("lm_eval_tasks")
    @classmethod
    def _lm_eval_tasks(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if not t or "/" in t or t.startswith(".")]
        if bad:
            raise ValueError(f"lm_eval_tasks: {bad} are not task names; give lm-eval's names, e.g. [mmlu]")
        return list(dict.fromkeys(v))


class Compare(_Section):
    """Every method at several pruning ratios on held-out text: the table, plots and one MLflow run per cell."""

    methods: list[str]
    ratios: list[float] = Field(description="fractions of layers removed; k = round(ratio * L)")
    eval_windows: int | None = Field(ge=1, description="held-out windows per corpus; null = all of them")
    n_items: ItemCount = Field(ge=1, description="zero-shot items per task (evaluate.tasks); all (or null) = all")

    batch_size: int = Field(ge=1)
    cache_mib: float = Field(ge=0, description="prefix-reuse cache for the held-out perplexities")
    repairs: list[Literal["none", "linear"]] = Field(
        min_length=1, description="every set is measured as pruned (none) and after each repair listed"
    )
    bootstrap: int = Field(ge=100, description="paired bootstrap resamples behind each difference's 95 % interval")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in PRUNE_METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(PRUNE_METHODS)} (or [] to skip)")
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
    gguf: Literal["auto", "true", "false"] = Field(description="auto: write model.gguf wherever it can be written")
    gguf_type: Literal["F32", "F16", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0"] = Field(
        description="the matrices' type in a GGUF converted from a source that is no GGUF (a GGUF source keeps its own)"
    )
    gguf_changed: Literal["source", "F32", "F16", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0"] = Field(
        description="a cut GGUF's tensors that the repair changed: their source type (source) or this type"
    )
    base_model: str | None = Field(description="the card's base_model (the source's hub id); null = base.model")
    registered_name: str | None = Field(description="MLflow registry name; null = shapprune-<base_model's name>")
    mlflow_max_mb: float = Field(ge=0, description="larger exports are logged by reference and not registered")
    check_windows: int = Field(ge=1, description="validation windows on which each shipped file is checked")

    @field_validator("gguf", mode="before")
    @classmethod
    def _gguf(cls, v: object) -> object:
        return str(v).lower() if isinstance(v, bool) else v  # YAML's true/false, as the strings the schema lists
