"""Prefect tasks that turn real text corpora into calibration, validation and evaluation windows."""

from __future__ import annotations

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError, PrepareData
from shapprune.data import Document, assert_disjoint, load_documents, make_windows, split_documents
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
    cfg: PrepareData, tokenizer: object, seed: int
) -> tuple[dict[str, TokenWindows], dict[str, TokenWindows], dict[str, int]]:
    """Calibration/validation/repair windows and one held-out window set per evaluation corpus, all disjoint.

    Repair windows come from the calibration documents (never held-out text) by a stream of their own.
    """
    rng = np.random.default_rng(seed)
    sources = {cfg.calibration_source, *cfg.eval_corpora.values()}
    docs = {s: load_source(s) for s in sorted(sources)}
    # articles that also appear in another corpus (same title) never enter calibration/validation
    other_ids = {d.doc_id for s, ds in docs.items() if s != cfg.calibration_source for d in ds}
    split = split_documents(
        docs[cfg.calibration_source],
        {
            "calibration": cfg.calibration_fraction,
            "validation": cfg.validation_fraction,
            "test": 1 - cfg.calibration_fraction - cfg.validation_fraction,
        },
        rng,
        exclude_ids=other_ids,
    )
    calib = {
        "calibration": make_windows(
            tokenizer, split["calibration"], cfg.seq_len, cfg.calibration_windows, rng, cfg.add_bos
        )
    }
    if cfg.validation_windows:
        calib["validation"] = make_windows(
            tokenizer, split["validation"], cfg.seq_len, cfg.validation_windows, rng, cfg.add_bos
        )
    evals = {}
    for role, source in cfg.eval_corpora.items():
        pool = split["test"] if source == cfg.calibration_source else docs[source]
        evals[role] = make_windows(tokenizer, pool, cfg.seq_len, cfg.eval_windows, rng, cfg.add_bos)
    if cfg.repair_windows:  # its own stream: its count moves no other window
        repair_rng = np.random.default_rng([seed, 7])
        calib["repair"] = make_windows(
            tokenizer, split["calibration"], cfg.seq_len, cfg.repair_windows, repair_rng, cfg.add_bos
        )
    for windows in evals.values():
        for cal in calib.values():
            assert_disjoint(cal, windows)
    counts = {f"docs_{s}": len(d) for s, d in docs.items()}
    counts |= {f"docs_{k}": len(v) for k, v in split.items()}
    return calib, evals, counts
