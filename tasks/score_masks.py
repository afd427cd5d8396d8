"""Prefect tasks that score layer masks on the LLM: prefix reuse, checkpointed chunks, optional Dask workers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from shapprune.checkpoint import ChunkStore
from shapprune.models import DTYPES, load_model
from shapprune.prefix import PrefixScorer, lexicographic_order
from shapprune.rounds import Pool
from shapprune.scoring import NLL, masked_nll, utility_from_nll
from shapprune.types import Mask, TokenWindows
from tasks.shared.artifacts import bits_to_masks, mask_bits, read_windows
from tasks.shared.guards import fault_point
from tasks.shared.progress import PrefectProgress

STOP_REASONS = {
    "resolved": "the choice was resolved (the surrogate's top set measured within the tolerance of the best "
    "set measured, in the last score_masks.patience rounds)",
    "cap": "the cap (sample_masks.n_masks) was reached before the choice was resolved",
}
FULL_ID = -1  # the full model is scored like a mask (row id -1), so every run divides by the same NLL
_WORKER_MODEL: dict[tuple, torch.nn.Module] = {}  # this process's model, loaded once
_WORKER_SCORER: dict[tuple, MaskScorer] = {}  # a Dask worker's scorer: its prefix cache outlives a chunk


@dataclass(frozen=True)
class ScoringSetup:
    """Everything a worker needs to rebuild the game: model, windows, precision and batching."""

    model_dir: str
    windows_path: str
    dtype: str
    device: str
    batch_size: int
    prefix_reuse: bool
    cache_mib: float
    threads: int = 0


class MaskScorer:
    """Scores masks one by one, reusing prefixes across calls when enabled."""

    def __init__(self, model: torch.nn.Module, windows: TokenWindows, setup: ScoringSetup) -> None:
        self.model, self.windows, self.setup = model, windows, setup
        self.prefix = PrefixScorer(model, windows, setup.batch_size, setup.cache_mib) if setup.prefix_reuse else None

    def __call__(self, mask: np.ndarray) -> NLL:
        if self.prefix is not None:
            return self.prefix.score(mask)
        return masked_nll(self.model, self.windows, mask, self.setup.batch_size)

    def saved_fraction(self) -> float:
        return self.prefix.stats.saved_fraction if self.prefix is not None else 0.0


def rows_frame(mask_ids: list[int], bits: list[str], nlls: list[NLL]) -> pd.DataFrame:
    """Raw scores (no utility yet): mask id, bits, summed NLL and token count."""
    return pd.DataFrame(
        {
            "mask_id": np.asarray(mask_ids, dtype=np.int64),
            "bits": bits,
            "nll_sum": [n.total for n in nlls],
            "n_tokens": np.asarray([n.tokens for n in nlls], dtype=np.int64),
        }
    )


def worker_device(device: str) -> str:
    """``cuda`` inside a Dask worker on a machine with several GPUs: this worker's own GPU (worker i ->
    ``cuda:i mod n``, so a local cluster of one worker per GPU uses every GPU); otherwise ``device``."""
    if device != "cuda" or torch.cuda.device_count() < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # not in a Dask worker
        return device
    if isinstance(name, int) or str(name).isdigit():
        return f"cuda:{int(name) % torch.cuda.device_count()}"
    return device  # a named worker of an external cluster: pin it with CUDA_VISIBLE_DEVICES


def worker_model(setup: ScoringSetup) -> torch.nn.Module:
    """The model of this process (on this worker's own GPU), loaded once and reused by every chunk it scores."""
    key = (setup.model_dir, setup.dtype, setup.device)
    if key not in _WORKER_MODEL:
        if setup.threads:
            torch.set_num_threads(setup.threads)
        _WORKER_MODEL.clear()
        device = worker_device(setup.device)
        _WORKER_MODEL[key] = load_model(setup.model_dir, dtype=DTYPES[setup.dtype], device=device)[0]
    return _WORKER_MODEL[key]


def worker_scorer(setup: ScoringSetup) -> MaskScorer:
    """A Dask worker's scorer, reused by every chunk the worker scores, so that its prefix cache carries over
    from one chunk to the next (results are bit-identical either way; only layer passes are saved)."""
    if setup not in _WORKER_SCORER:
        _WORKER_SCORER.clear()
        _WORKER_SCORER[setup] = MaskScorer(worker_model(setup), read_windows(Path(setup.windows_path)), setup)
    return _WORKER_SCORER[setup]


@task(name="score-chunk", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def score_chunk(setup: ScoringSetup, mask_ids: list[int], bits: list[str]) -> pd.DataFrame:
    """Score one chunk of masks (in trie order) in whichever process runs the task, e.g. a Dask worker."""
    scorer = worker_scorer(setup)
    masks = bits_to_masks(pd.Series(bits))
    return rows_frame(mask_ids, bits, [scorer(m) for m in masks])


def plan_chunks(todo_ids: list[int], todo_masks: Mask, chunk_size: int) -> list[tuple[list[int], list[str]]]:
    """Cut the masks still to score into chunks of consecutive masks in trie order (keeps prefixes shared)."""
    order = lexicographic_order(todo_masks)
    ids = [todo_ids[i] for i in order]
    bits = mask_bits(todo_masks[order])
    return [(ids[s : s + chunk_size], bits[s : s + chunk_size]) for s in range(0, len(ids), chunk_size)]


def progress_logger(total: int, already: int) -> Callable[[int], None]:
    """Logs ``scored i/n`` with rate and ETA about twenty times per run, mirrored as a progress bar in the
    Prefect UI (artifact ``score-masks-progress``, created at the first report)."""
    logger = get_run_logger()
    start, every = time.perf_counter(), max(1, total // 20)
    bar: list[PrefectProgress] = []

    def report(done: int) -> None:
        if done % every and done != total:
            return
        elapsed = time.perf_counter() - start
        rate = (done - already) / elapsed if elapsed > 0 else float("nan")
        eta = (total - done) / rate if rate and rate > 0 else float("nan")
        line = f"scored {done}/{total} masks  {rate:.2f} masks/s  ETA {eta:.0f}s"
        logger.info(line)
        if not bar:
            bar.append(PrefectProgress("score-masks-progress", "masks scored on the LLM", 100 * already / total))
        bar[0].update(100 * done / total, line)

    return report


@task(name="score-in-process", cache_policy=NO_CACHE)
def score_in_process(
    setup: ScoringSetup, chunks: list[tuple[list[int], list[str]]], store: ChunkStore, report: Callable[[int], None]
) -> float:
    """Score every chunk here, one model, prefix cache kept across chunks; returns the saved fraction."""
    scorer = MaskScorer(worker_model(setup), read_windows(Path(setup.windows_path)), setup)
    done = 0
    for ids, bits in chunks:
        nlls = []
        for mask in bits_to_masks(pd.Series(bits)):
            nlls.append(scorer(mask))
            done += 1
            report(done)
        store.append(rows_frame(ids, bits, nlls))
        fault_point("score_masks:chunk", len(store.chunks()))
    return scorer.saved_fraction()


def nlls_by_bits(raw: pd.DataFrame, bits: list[str], n_layers: int) -> tuple[list[NLL], NLL]:
    """The checkpoint rows' NLLs of the masks ``bits`` (matched by bits: a mask's id may differ between runs, its
    bits never) and the full model's."""
    raw = raw.drop_duplicates("bits", keep="first").set_index("bits")
    full = raw.loc["1" * n_layers]
    rows = raw.loc[bits]
    nlls = [NLL(float(t), int(n)) for t, n in zip(rows["nll_sum"], rows["n_tokens"])]
    return nlls, NLL(float(full["nll_sum"]), int(full["n_tokens"]))


def assemble(raw: pd.DataFrame, table: pd.DataFrame, utility: str) -> tuple[pd.DataFrame, NLL]:
    """Final scores in ``table``'s order: NLL, PPL and utility per mask (non-finite values kept and flagged)."""
    n_layers = len(table["bits"].iloc[0]) if len(table) else len(raw["bits"].iloc[0])
    nlls, full = nlls_by_bits(raw, table["bits"].tolist(), n_layers)
    util = np.array([utility_from_nll(n, full, utility) for n in nlls])
    out = pd.DataFrame(
        {
            "mask_id": table["mask_id"].to_numpy(),
            "n_kept": table["n_kept"].to_numpy(),
            "bits": table["bits"].to_numpy(),
            "source": table["source"].to_numpy() if "source" in table else "design",
            "nll_sum": [n.total for n in nlls],
            "n_tokens": np.asarray([n.tokens for n in nlls], dtype=np.int64),
            "nll_mean": [n.mean for n in nlls],
            "ppl": [n.perplexity for n in nlls],
            "utility": util,
            "finite": [math.isfinite(u) for u in util],
        }
    )
    return out, full


class PoolGame:
    """The calibration game of the rounds (``score_masks.stop: decision``): each call scores the masks the
    checkpoints lack through ``score(ids, masks)`` and answers every mask from the checkpoints, so a killed
    run that replays its rounds scores nothing twice. Design masks keep their table ids; proposals get new ones."""

    def __init__(self, score: Callable[[list[int], Mask], None], store: ChunkStore, table: pd.DataFrame,
                 utility: str) -> None:  # fmt: skip
        self.score, self.store, self.utility = score, store, utility
        self.ids = dict(zip(table["bits"], table["mask_id"].astype(int)))
        self.next_id = int(table["mask_id"].max()) + 1 if len(table) else 0
        self.n_players = len(table["bits"].iloc[0])

    def _id(self, bits: str) -> int:
        if bits not in self.ids:
            self.ids[bits], self.next_id = self.next_id, self.next_id + 1
        return self.ids[bits]

    def __call__(self, masks: Mask) -> np.ndarray:
        bits = mask_bits(np.asarray(masks, dtype=bool))
        self.score([self._id(b) for b in bits], np.asarray(masks, dtype=bool))
        nlls, full = nlls_by_bits(self.store.load(), bits, self.n_players)
        return np.array([utility_from_nll(n, full, self.utility) for n in nlls])

    def table(self, masks: Mask, sources: list[str]) -> pd.DataFrame:
        """The pool as a masks table (``mask_id``, ``n_kept``, ``bits``, ``source``), in the order scored."""
        bits = mask_bits(np.asarray(masks, dtype=bool))
        return pd.DataFrame(
            {
                "mask_id": np.asarray([self._id(b) for b in bits], dtype=np.int64),
                "n_kept": np.asarray(masks, dtype=bool).sum(axis=1).astype(np.int64),
                "bits": bits,
                "source": sources,
            }
        )


def rounds_record(pool: Pool, k: int, cap: int) -> dict:
    """What the rounds did: evaluations by source, rounds, why they stopped, the last proposal and each round."""
    last = pool.rounds[-1] if pool.rounds else None
    return {
        "k": k,
        "cap": cap,
        "n_rounds": len(pool.rounds),
        "n_proposals": pool.sources.count("proposal"),
        "stop_reason": pool.reason,
        "proposal": list(last.proposals[k]) if last else [],
        "best": list(last.best[k]) if last else [],  # the best k-set the LLM measured: what select starts from
        "rounds": [
            {
                "round": r.index,
                "n_design": r.n_design,
                "n_evaluations": r.n_evaluations,
                "proposal": list(r.proposals[k]),
                "best": list(r.best[k]),
                "agrees": r.agrees[k],
                "resolved": r.resolved[k],
            }
            for r in pool.rounds
        ],
    }
