"""Prefect task that scores layer masks on the real LLM, with progress (rate and ETA) in the logs."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from shapprune.game import LayerGame
from shapprune.scoring import utility_from_nll
from shapprune.types import Mask
from tasks.artifacts import mask_bits


def _progress(logger, total: int, every: int) -> callable:
    start = time.perf_counter()

    def report(done: int) -> None:
        if done % every and done != total:
            return
        elapsed = time.perf_counter() - start
        rate = done / elapsed if elapsed else float("nan")
        eta = (total - done) / rate if rate else float("nan")
        logger.info(f"scored {done}/{total} masks  {rate:.2f} masks/s  ETA {eta:.0f}s")

    return report


@task(name="score-masks", cache_policy=NO_CACHE)
def score_all(game: LayerGame, masks: Mask, utility: str) -> pd.DataFrame:
    """One row per mask: bits, NLL, token count, PPL and utility (NaN/inf kept aligned and flagged)."""
    logger = get_run_logger()
    report = _progress(logger, len(masks), max(1, len(masks) // 20))
    rows = []
    for i, mask in enumerate(masks):
        nll = game.nll(mask)
        rows.append((nll.total, nll.tokens, nll.mean, nll.perplexity, utility_from_nll(nll, game.full, utility)))
        report(i + 1)
    total, tokens, mean, ppl, util = (np.array(c) for c in zip(*rows)) if rows else ([],) * 5
    return pd.DataFrame(
        {
            "mask_id": np.arange(len(masks)),
            "n_kept": masks.sum(axis=1),
            "bits": mask_bits(masks),
            "nll_sum": total,
            "n_tokens": tokens,
            "nll_mean": mean,
            "ppl": ppl,
            "utility": util,
            "finite": [math.isfinite(u) for u in util],
        }
    )
