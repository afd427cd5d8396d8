"""Stage ``score_masks``: the utility of every sampled mask on the real LLM.

Dropped layers are skipped (never executed); masks are visited in trie order so that shared
prefixes are computed once; results are checkpointed in chunks under ``data/.score_masks_work``
so that a killed run resumes where it stopped; ``score_masks.workers`` (or ``scheduler``) spreads
the chunks over Dask workers, each loading the model once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow
from prefect.futures import as_completed

from shapprune.checkpoint import ChunkStore, fingerprint
from shapprune.models import resolve_device, resolve_dtype
from shapprune.rounds import StopRule, score_until_resolved
from shapprune.select.fit import surrogate_fit
from shapprune.select.proposals import search_proposals
from shapprune.streams import stream
from tasks.score_masks import (
    FULL_ID,
    STOP_REASONS,
    PoolGame,
    ScoringSetup,
    assemble,
    plan_chunks,
    progress_logger,
    rounds_record,
    score_chunk,
    score_in_process,
)
from tasks.shared.artifacts import mask_bits, read_masks, write_table
from tasks.shared.contracts import write_json
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.model import saved_layer_count, warn_if_slow
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


def _local_cluster(workers: int):
    """A local Dask cluster of ``workers`` single-threaded processes (each loads the model once, then keeps it)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


@flow(name="score_masks_dask", log_prints=True, validate_parameters=False)
def score_on_dask(setup: ScoringSetup, chunks: list, store_dir: str, total: int, already: int) -> None:
    """Subflow run on a Dask task runner: one task per chunk, each result checkpointed as it arrives."""
    store, report, finished = ChunkStore(Path(store_dir)), progress_logger(total, already), already
    futures = [score_chunk.submit(setup, ids, bits) for ids, bits in chunks]
    for future in as_completed(futures):
        rows = future.result()
        store.append(rows)
        finished += len(rows)
        report(finished)


def setup_for(stage: Stage, scheduler: str | None, distributed: bool) -> tuple[ScoringSetup, ChunkStore]:
    """What every scorer needs (model, windows, dtype, device, batching) and the checkpoint folder keyed by
    what changes a score."""
    cfg, paths = stage.params.score_masks, stage.paths
    device = resolve_device(stage.params.base.device)
    torch_dtype = resolve_dtype(stage.params.base.dtype, device)
    warn_if_slow(torch_dtype, device)
    dtype = str(torch_dtype).removeprefix("torch.")
    setup = ScoringSetup(
        model_dir=str(paths.model),
        windows_path=str(paths.calibration),
        dtype=dtype,
        device=device,
        batch_size=cfg.batch_size,
        prefix_reuse=cfg.prefix_reuse,
        cache_mib=cfg.cache_mib,
        threads=stage.params.base.threads or (1 if distributed and not scheduler else 0),
    )
    key = fingerprint(
        [*sorted(paths.model.glob("*.safetensors")), paths.model / "config.json", paths.calibration,
         dtype, device, str(cfg.batch_size)]
    )  # fmt: skip
    return setup, ChunkStore(paths.root / "data" / ".score_masks_work" / key)


class Scorer:
    """Scores the masks the checkpoints lack, in chunks (trie order), in this process or on Dask; every call
    appends to the same checkpoints, which a rerun resumes from."""

    def __init__(self, setup: ScoringSetup, store: ChunkStore, chunk_size: int, scheduler: str | None,
                 distributed: bool, workers: int, total: int) -> None:  # fmt: skip
        self.setup, self.store, self.chunk_size = setup, store, chunk_size
        self.scheduler, self.distributed, self.workers, self.total = scheduler, distributed, workers, total
        done = store.load()
        self.already = 0 if done is None else len(done)
        self.n_scored, self.saved_fraction = 0, float("nan")
        self._cluster = None  # started on the first call that needs it, kept for every later round

    def _address(self) -> str:
        """The scheduler every round's chunks go to: the configured one, or this run's own local cluster."""
        if self.scheduler:
            return self.scheduler
        if self._cluster is None:
            self._cluster = _local_cluster(self.workers)
        return self._cluster.scheduler_address

    def close(self) -> None:
        """Stop the local cluster, if one was started."""
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __call__(self, ids, masks: np.ndarray) -> None:
        done = self.store.load()
        done_bits = set(done["bits"]) if done is not None else set()
        todo = [i for i, b in enumerate(mask_bits(masks)) if b not in done_bits]
        if not todo:
            return
        chunks = plan_chunks([int(ids[i]) for i in todo], masks[todo], self.chunk_size)
        before = self.already + self.n_scored
        if self.distributed:
            from prefect_dask import DaskTaskRunner

            score_on_dask.with_options(task_runner=DaskTaskRunner(address=self._address()))(
                self.setup, chunks, str(self.store.directory), self.total, before
            )
        else:
            report = progress_logger(self.total, before)
            self.saved_fraction = score_in_process(self.setup, chunks, self.store, lambda d: report(before + d))
        self.n_scored += len(todo)


@dataclass(frozen=True)
class Design:
    """The sampled masks to score: their table (``mask_id``, ``n_kept``, ``bits``) and the masks."""

    table: pd.DataFrame
    masks: np.ndarray  # bool[m, L]
    n_layers: int


@dataclass(frozen=True)
class Scores:
    """The scores table, its metrics record and the checkpoints it was assembled from."""

    scores: pd.DataFrame  # data/scores.parquet
    info: dict  # data/metrics/score_masks.json
    store: ChunkStore


class ScoreMasks:
    """Score every mask not yet in the checkpoints (the full model first), in process or on Dask."""

    name = "score_masks"

    def read(self, stage: Stage) -> Design:
        n_layers = saved_layer_count(stage.paths.model)
        table, masks = read_masks(stage.paths.masks, n_layers)
        return Design(table, masks, n_layers)

    def compute(self, stage: Stage, drawn: Design) -> Scores:
        """The scores table and its record; each scorer loads the model itself (a Dask worker too)."""
        params, cfg, n_layers, table = stage.params, stage.params.score_masks, drawn.n_layers, drawn.table
        scheduler = os.environ.get("SHAPPRUNE_DASK_ADDRESS") or cfg.scheduler  # None: a local cluster or in process
        distributed = bool(scheduler) or cfg.workers > 0
        setup, store = setup_for(stage, scheduler, distributed)
        done = store.load()
        if done is not None:
            print(f"resuming: {len(done)} masks already scored (none is scored again)")
        cap = min(params.sample_masks.n_masks, len(drawn.masks))
        scorer = Scorer(setup, store, cfg.chunk_size, scheduler, distributed, cfg.workers, cap + 1)
        try:
            start = time.perf_counter()
            scorer(np.asarray([FULL_ID]), np.ones((1, n_layers), bool))  # the reference of every utility
            rounds: dict = {"stop": cfg.stop}
            if cfg.stop == "cap":
                scorer(table["mask_id"].to_numpy(), drawn.masks)
                pooled = table.assign(source="design")
            else:
                game = PoolGame(scorer, store, table, cfg.utility)
                k = params.prune.resolve_n_drop(n_layers)
                pool = score_until_resolved(
                    game, drawn.masks, [k], surrogate_fit(params.select.surrogate, params.fit_surrogate.mlp_options()),
                    lambda predict, n, kk: search_proposals(predict, n, kk, params.select.beam_width, cfg.proposals),
                    StopRule(cfg.round_size, cap, cfg.patience, cfg.tolerance), stream(params.base.seed, "rounds"),
                )  # fmt: skip
                pooled = game.table(*pool.arrays()[:1], pool.sources)
                rounds |= rounds_record(pool, k, cap)
            seconds = time.perf_counter() - start
        finally:
            scorer.close()  # the local Dask cluster, kept across rounds
        scores, full = assemble(store.load(), pooled, cfg.utility)
        info = {
            "n_masks": len(scores),
            "n_design": int((scores["source"] == "design").sum()),
            "n_scored_this_run": scorer.n_scored,
            "n_nonfinite": int((~scores["finite"]).sum()),
            "full_ppl": full.perplexity,
            "full_nll_mean": full.mean,
            "calibration_tokens": full.tokens,
            "seconds": seconds,
            "seconds_per_mask": seconds / max(1, scorer.n_scored),
            "prefix_saved_fraction": scorer.saved_fraction,
            "workers": cfg.workers if distributed else 0,
            "device": setup.device,
            "dtype": setup.dtype,
            "utility_mean": float(scores.loc[scores["finite"], "utility"].mean()),
            **rounds,
        }
        return Scores(scores, info, store)

    def write(self, stage: Stage, scored: Scores) -> Figures:
        """The scores table and metrics; then the checkpoints, now redundant, go."""
        write_table(scored.scores, stage.paths.scores)
        scored.store.clear()
        write_json(stage.paths.metrics_file("score_masks"), scored.info)
        return {}

    def log(self, tracker: Tracker, stage: Stage, scored: Scores) -> None:
        info = scored.info
        tracker.log_metrics({k: v for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if info["stop"] == "decision":
            tracker.set_tags({"stop_reason": info["stop_reason"], "proposal": ",".join(map(str, info["proposal"]))})

    def summary(self, scored: Scores) -> str:
        """A warning line when masks have non-finite utility, then the scoring line."""
        info = scored.info
        lines = []
        if info["n_nonfinite"]:
            lines.append(
                f"WARNING: {info['n_nonfinite']} masks have non-finite utility; kept in the table with finite=False"
            )
        rate = f"{info['seconds']:.0f}s ({info['seconds_per_mask']:.2f} s/mask)"
        lines.append(
            f"scored {info['n_scored_this_run']} masks in {rate}; full-model calibration PPL {info['full_ppl']:.3f}"
        )
        if info["stop"] == "decision":
            lines.append(
                f"{info['n_masks']} LLM evaluations ({info['n_design']} design masks, {info['n_proposals']} "
                f"proposals) in {info['n_rounds']} rounds of at most {info['cap']}: stopped because "
                f"{STOP_REASONS[info['stop_reason']]}; at k={info['k']} the best set measured drops {info['best']}, "
                f"the surrogate's top proposal {info['proposal']}"
            )
        return "\n".join(lines)

    def returns(self, scored: Scores) -> dict:
        return scored.info


@flow(name="score_masks", log_prints=True)
def score_masks(root: str = ".") -> dict:
    return run_stage(ScoreMasks(), root)


if __name__ == "__main__":
    stage_main(score_masks)
