"""Stage ``evaluate`` (``evaluate@full``, ``evaluate@pruned``): held-out perplexity and zero-shot accuracy."""

from __future__ import annotations

import time

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shapprune.evaluation.zero_shot import evaluate_tasks
from shapprune.models import parameter_count
from shapprune.scoring import window_nll
from shapprune.surgery import num_layers
from tasks.artifacts import read_windows
from tasks.model import load_stage_model
from tasks.runtime import Stage, stage_main, write_json

WHICH = ("full", "pruned")


@task(name="perplexity", cache_policy=NO_CACHE)
def perplexities(model, stage: Stage, batch_size: int) -> tuple[dict[str, float], float]:
    """PPL on every held-out corpus, and forward throughput in tokens/s."""
    ppl, tokens, seconds = {}, 0, 0.0
    for role in stage.params.prepare_data.eval_corpora:
        windows = read_windows(stage.paths.eval_windows(role))
        start = time.perf_counter()
        nll = window_nll(model, windows, batch_size)
        seconds += time.perf_counter() - start
        tokens += windows.size
        ppl[role] = nll.perplexity
    return ppl, tokens / seconds


@task(name="zero-shot", cache_policy=NO_CACHE)
def zero_shot(model, tokenizer, stage: Stage, device: str):
    cfg = stage.params.evaluate
    return evaluate_tasks(model, tokenizer, cfg.tasks, cfg.n_items, stage.params.base.seed, cfg.batch_size, device)


@flow(name="evaluate", log_prints=True)
def evaluate(which: str = "pruned", root: str = ".") -> dict:
    stage = Stage.open(f"evaluate@{which}", root)
    model_dir = stage.paths.model if which == "full" else stage.paths.pruned
    with stage.tracking() as tracker:
        model, tokenizer, device = load_stage_model(model_dir, stage.params)
        ppl, tps = perplexities(model, stage, stage.params.evaluate.batch_size)
        tasks_df = zero_shot(model, tokenizer, stage, device)
        info = {
            "which": which,
            "n_layers": num_layers(model),
            "parameters": parameter_count(model),
            "ppl": ppl,
            "tokens_per_s": tps,
            "zero_shot": {
                row["task"]: {k: v for k, v in row.items() if k != "task"} for row in tasks_df.to_dict("records")
            },
            "mean_acc": float(np.mean(tasks_df["acc"])) if len(tasks_df) else float("nan"),
            "mean_acc_norm": float(np.mean(tasks_df["acc_norm"])) if len(tasks_df) else float("nan"),
        }
        write_json(stage.paths.eval_metrics(which), info)
        tracker.log_metrics(
            {f"ppl_{k}": v for k, v in ppl.items()}
            | {f"acc_{t}": r["acc"] for t, r in info["zero_shot"].items()}
            | {"mean_acc": info["mean_acc"], "mean_acc_norm": info["mean_acc_norm"], "tokens_per_s": tps}
        )
        print(f"{which}: PPL {', '.join(f'{k} {v:.2f}' for k, v in ppl.items())}; mean acc {info['mean_acc']:.3f}")
        return info


if __name__ == "__main__":
    stage_main(evaluate, extra_args=lambda p: p.add_argument("--which", choices=WHICH, default="pruned"))
