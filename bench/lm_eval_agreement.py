"""Our zero-shot scorer against lm-evaluation-harness on the default model, and its batch-size drift.

Part 1, agreement: lm-eval runs its own task definitions pointed at the arrow files our loader reads (the
test's :func:`tests.evaluation.lm_eval_tasks.local_task_configs`), on the first ``--items`` documents of
each of the seven tasks; our scorer scores the same items; both on ``data/model`` in float32. Per task:
choices compared, the largest log-likelihood difference, and the items whose acc / acc_norm differ.

Part 2, drift: our scorer on the first ``--drift-items`` items of each task at batch size 1 and at
``--batch-size``, in bfloat16 (the scoring before ``evaluate.dtype: float32``), in float32 (since) and in
float64 (`evaluate.dtype: float64`): the largest log-likelihood change with the batch size, the items whose
acc changes, and the time of the batched pass as a multiple of float32's, side by side in one run.

    python -m bench.lm_eval_agreement                     # after make repro (data/model); lm-eval installed
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shapprune.evaluation.zero_shot import TASKS, item_hits, load_task, score_items
from shapprune.models import load_model
from tests.evaluation.lm_eval_tasks import local_task_configs

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"


def by_choice(scores: pd.DataFrame) -> dict[tuple[int, int], float]:
    """(item, choice) -> log-likelihood."""
    return {(int(r.item), int(r.choice)): float(r.loglik) for r in scores.itertuples()}


def agreement(model, tokenizer, n_items: int, batch_size: int) -> list[dict]:
    """One row per task: lm-eval's samples against our scores on the same first ``n_items`` items."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        names = local_task_configs(Path(tmp))
        harness = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
        out = lm_eval.simple_evaluate(
            model=harness, tasks=names, limit=n_items, log_samples=True, bootstrap_iters=0,
            task_manager=TaskManager(include_path=tmp),
        )  # fmt: skip
    rows = []
    for task in TASKS:
        samples = sorted(out["samples"][f"ours_{task}"], key=lambda s: s["doc_id"])
        items = load_task(task, None, np.random.default_rng(0))[: len(samples)]
        ours = score_items(model, tokenizer, items, batch_size=batch_size)
        acc, acc_norm = item_hits(ours, items)
        mine = by_choice(ours)
        diffs, acc_flips, norm_flips = [], 0, 0
        for i, sample in enumerate(samples):
            theirs = [float(resp[0]) for resp in sample["filtered_resps"]]
            diffs += [abs(mine[(i, c)] - ll) for c, ll in enumerate(theirs)]
            acc_flips += int(bool(acc[i]) != bool(sample["acc"]))
            if "acc_norm" in sample:
                norm_flips += int(bool(acc_norm[i]) != bool(sample["acc_norm"]))
        rows.append({
            "task": task, "items": len(samples), "choices": len(diffs), "max_abs_loglik_diff": max(diffs),
            "acc_ours": float(np.mean(acc)), "acc_lm_eval": float(np.mean([s["acc"] for s in samples])),
            "acc_items_differ": acc_flips, "acc_norm_items_differ": norm_flips if "acc_norm" in samples[0] else None,
        })  # fmt: skip
    return rows


def drift(model_dir: Path, n_items: int, batch_size: int) -> list[dict]:
    """Per dtype: the largest |log-likelihood| change between batch 1 and ``batch_size``, acc flips, seconds."""
    rows = []
    for dtype in (torch.bfloat16, torch.float32, torch.float64):
        model, tokenizer = load_model(str(model_dir), dtype=dtype)
        gap, flips, choices, seconds = 0.0, 0, 0, 0.0
        for task in TASKS:
            items = load_task(task, None, np.random.default_rng(0))[:n_items]
            one = score_items(model, tokenizer, items, batch_size=1)
            began = time.perf_counter()
            many = score_items(model, tokenizer, items, batch_size=batch_size)
            seconds += time.perf_counter() - began
            a, b = by_choice(one), by_choice(many)
            gap = max(gap, max(abs(a[k] - b[k]) for k in a))
            flips += int((item_hits(one, items)[0] != item_hits(many, items)[0]).sum())
            choices += len(a)
        rows.append({"dtype": str(dtype).removeprefix("torch."), "choices": choices, "max_abs_loglik_change": gap,
                     "acc_items_changed": flips, "items": n_items * len(TASKS), "batched_s": seconds})  # fmt: skip
        del model
    fp32 = next(r["batched_s"] for r in rows if r["dtype"] == "float32")
    for r in rows:
        r["time_vs_float32"] = r["batched_s"] / fp32
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100, help="items per task compared with lm-eval")
    parser.add_argument("--drift-items", type=int, default=20, help="items per task for the batch-size drift")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="lm_eval_agreement")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model_dir = ROOT / "data" / "model"
    model, tokenizer = load_model(str(model_dir), dtype=torch.float32)
    agree = agreement(model.eval(), tokenizer, args.items, args.batch_size)
    del model
    moved = drift(model_dir, args.drift_items, args.batch_size)
    command = (
        f"python -m bench.lm_eval_agreement --items {args.items} --drift-items {args.drift_items} "
        f"--batch-size {args.batch_size} --out {args.out}"
    )
    lines = [
        "# Our zero-shot scorer against lm-evaluation-harness, and its batch-size drift",
        "",
        f"`{command}`: SmolLM2-135M-Instruct (`data/model`, the Q4_1 GGUF dequantised). lm-eval runs its own "
        "task definitions pointed at the arrow files our loader reads, on the first "
        f"{args.items} documents of each task; our scorer scores the same items; both in float32, batch "
        f"{args.batch_size}.",
        "",
        "| task | items | choices | largest log-likelihood difference | acc ours | acc lm-eval | items whose acc "
        "differs | items whose acc_norm differs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in agree:
        norm = "– (lm-eval has none)" if r["acc_norm_items_differ"] is None else r["acc_norm_items_differ"]
        lines.append(
            f"| {r['task']} | {r['items']} | {r['choices']} | {r['max_abs_loglik_diff']:.1e} | {r['acc_ours']:.3f} | "
            f"{r['acc_lm_eval']:.3f} | {r['acc_items_differ']} | {norm} |"
        )
    lines += [
        "",
        f"Batch-size drift: our scorer on the first {args.drift_items} items of each task at batch 1 and at batch "
        f"{args.batch_size}, same model:",
        "",
        "| dtype | choices | largest log-likelihood change | items whose acc changes | batched pass, time vs float32 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in moved:
        lines.append(
            f"| {r['dtype']} | {r['choices']} | {r['max_abs_loglik_change']:.1e} | "
            f"{r['acc_items_changed']} of {r['items']} | {r['time_vs_float32']:.2f}x |"
        )
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    (OUT / f"{args.out}.json").write_text(json.dumps({"agreement": agree, "drift": moved}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
