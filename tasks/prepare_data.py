"""Prefect tasks that turn real text corpora into calibration, validation and evaluation windows."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError, PrepareData
from shapprune.data import Document, load_documents
from shapprune.data.splits import WindowPlan, draw_splits
from shapprune.types import TokenWindows


@task(name="load-documents", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def load_source(source: str) -> list[Document]:
    """All documents of one source (retried: hub sources may fail transiently)."""
    docs = load_documents(source)
    if not docs:
        raise ConfigError(f"prepare_data: source '{source}' has no documents after filtering; choose another source")
    return docs


@task(name="build-windows", cache_policy=NO_CACHE)
def build_windows(
    cfg: PrepareData, tokenizer: object, seed: int, max_positions: int | None = None
) -> tuple[dict[str, TokenWindows], dict[str, TokenWindows], dict[str, int]]:
    """Calibration/validation/repair windows and one held-out window set per evaluation corpus, all disjoint;
    none longer than the model's context, ``max_positions``, checked before any text is read."""
    plan = WindowPlan(**cfg.model_dump(include=set(WindowPlan.__dataclass_fields__)))
    plan.check_context(max_positions)
    docs = {s: load_source(s) for s in cfg.sources()}
    return draw_splits(plan, docs, tokenizer, seed)


def repair_label(cfg: PrepareData) -> str:
    """What the repair windows are: the calibration source or the mix (``wiki_extracts 0.5 + coqa_stories 0.5``)."""
    if not cfg.repair_mix:
        return cfg.calibration_source
    return " + ".join(f"{source} {share:g}" for source, share in cfg.repair_mix.items())
