"""Stage ``evaluate`` (``@full``, ``@pruned``, ``@repaired``): held-out perplexity, zero-shot accuracy, lm-eval tasks.

Every held-out corpus, every zero-shot task and every ``lm_eval_tasks`` entry is a part, checkpointed as soon
as it is done under ``data/.evaluate_work/<which>-<fingerprint>/``, so a killed run resumes with the parts it
had not finished.
"""

from __future__ import annotations

import inspect
import shutil
import time
from pathlib import Path

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shapprune.checkpoint import PartStore, fingerprint
from shapprune.evaluation.harness import check_tasks, run_task
from shapprune.evaluation.zero_shot import evaluate_tasks
from shapprune.models import parameter_count
from shapprune.scoring import window_nll
from shapprune.surgery import num_layers
from tasks.shared.artifacts import read_windows
from tasks.shared.contracts import write_json
from tasks.shared.guards import fault_point
from tasks.shared.model import load_stage_model
from tasks.shared.paths import Paths
from tasks.shared.plots import accuracy_bars, close
from tasks.shared.progress import StepProgress
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker

WHICH = ("full", "pruned", "repaired")  # data/model, data/pruned, data/repaired


WORK = ("data", ".evaluate_work")  # checkpoints of finished parts: data/.evaluate_work/<which>-<fingerprint>/
CODE = tuple(Path(inspect.getfile(f)) for f in (window_nll, evaluate_tasks, run_task)) + (Path(__file__),)


@task(name="perplexity", cache_policy=NO_CACHE)
def perplexity(model, windows_path: Path, batch_size: int) -> dict:
    """PPL on one held-out corpus, with its token count and forward seconds (for tokens/s)."""
    windows = read_windows(windows_path)
    start = time.perf_counter()
    nll = window_nll(model, windows, batch_size)
    return {"ppl": nll.perplexity, "tokens": int(windows.size), "seconds": time.perf_counter() - start}


@task(name="zero-shot", cache_policy=NO_CACHE)
def zero_shot(model, tokenizer, stage: Stage, name: str, device: str) -> dict:
    """acc and acc_norm (with standard errors), n and seconds of one zero-shot task."""
    cfg = stage.params.evaluate
    rows = evaluate_tasks(model, tokenizer, [name], cfg.n_items, stage.params.base.seed, cfg.batch_size, device)
    return {k: v for k, v in rows.to_dict("records")[0].items() if k != "task"}


@task(name="lm-eval", cache_policy=NO_CACHE)
def harness_task(model, tokenizer, stage: Stage, name: str, device: str) -> dict:
    """lm-eval's own metrics of one lm-eval task or group on this model, with the seconds it took."""
    cfg = stage.params.evaluate
    start = time.perf_counter()
    metrics = run_task(model, tokenizer, name, cfg.n_items, cfg.batch_size, device, stage.params.base.seed)
    return metrics | {"seconds": time.perf_counter() - start}


def work_store(stage: Stage, which: str, model_dir: Path, model) -> PartStore:
    """Checkpoint folder of this evaluation, keyed by everything that changes its numbers."""
    cfg, base = stage.params.evaluate, stage.params.base
    windows = [stage.paths.eval_windows(role) for role in stage.params.prepare_data.eval_corpora]
    weight = next(model.parameters())
    key = fingerprint(
        [*sorted(model_dir.glob("*.safetensors")), *sorted(model_dir.glob("*.json")),
         *(p if p.is_file() else str(p) for p in windows), *CODE,
         str(weight.dtype), str(weight.device), str(cfg.batch_size), str(cfg.n_items), str(base.seed)]
    )  # fmt: skip
    return PartStore(stage.paths.root.joinpath(*WORK, f"{which}-{key}"))


def evaluate_parts(model, tokenizer, device: str, stage: Stage, store: PartStore) -> tuple[dict, dict, dict, int]:
    """Perplexity per held-out corpus, accuracy per zero-shot task and lm-eval's metrics per ``lm_eval_tasks``
    entry, each checkpointed as soon as it is done.

    Parts that a killed run finished are read back, not recomputed. Returns the perplexity records by
    corpus, the task records by task, the lm-eval records by task and how many parts this run computed.
    """
    cfg, corpora = stage.params.evaluate, list(stage.params.prepare_data.eval_corpora)
    parts = [f"ppl-{role}" for role in corpora] + [f"task-{name}" for name in cfg.tasks]
    parts += [f"lmeval-{name}" for name in cfg.lm_eval_tasks]
    results = {name: record for name in parts if (record := store.get(name)) is not None}
    if results:
        print(
            f"resuming: {len(results)} of {len(parts)} parts already evaluated ({', '.join(results)}); "
            f"{len(parts) - len(results)} to go"
        )
    n_new = 0
    progress = StepProgress(f"evaluate-{stage.name.partition('@')[2] or 'model'}-progress",
                            "held-out corpora and zero-shot tasks evaluated", len(parts), len(results))  # fmt: skip
    for name in parts:
        if name in results:
            continue
        kind, _, what = name.partition("-")
        if kind == "ppl":
            results[name] = perplexity(model, stage.paths.eval_windows(what), cfg.batch_size)
        elif kind == "lmeval":
            results[name] = harness_task(model, tokenizer, stage, what, device)
        else:
            results[name] = zero_shot(model, tokenizer, stage, what, device)
        store.put(name, results[name])
        n_new += 1
        progress.step(len(results), name)
        fault_point("evaluate:part", len(store.names()))  # crash tests: SHAPPRUNE_FAULT=evaluate:part:N
    ppl, tasks = {r: results[f"ppl-{r}"] for r in corpora}, {t: results[f"task-{t}"] for t in cfg.tasks}
    return ppl, tasks, {t: results[f"lmeval-{t}"] for t in cfg.lm_eval_tasks}, n_new


def record(which: str, model, ppl_parts: dict, task_parts: dict, harness_parts: dict, n_new: int) -> dict:
    """``data/metrics/eval_<which>.json``: PPL per corpus, tokens/s, accuracy per task and their means, and
    lm-eval's metrics per ``lm_eval_tasks`` entry (not in the means)."""
    seconds = sum(r["seconds"] for r in ppl_parts.values())
    accs = [r["acc"] for r in task_parts.values()]
    norms = [r["acc_norm"] for r in task_parts.values()]
    return {
        "which": which,
        "n_layers": num_layers(model),
        "parameters": parameter_count(model),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "ppl": {role: r["ppl"] for role, r in ppl_parts.items()},
        "tokens_per_s": sum(r["tokens"] for r in ppl_parts.values()) / seconds if seconds > 0 else float("nan"),
        "zero_shot": task_parts,
        "mean_acc": float(np.mean(accs)) if accs else float("nan"),
        "mean_acc_norm": float(np.mean(norms)) if norms else float("nan"),
        "lm_eval": harness_parts,
        "n_parts_this_run": n_new,
    }


def compute(stage: Stage, which: str) -> tuple[dict, PartStore]:
    """Evaluate (or read back from the checkpoints) every part of the ``which`` model; returns its record."""
    model_dir = {"full": stage.paths.model, "pruned": stage.paths.pruned, "repaired": stage.paths.repaired}[which]
    if stage.params.evaluate.lm_eval_tasks:  # an unknown name or unreachable data stops here, before any work
        check_tasks(stage.params.evaluate.lm_eval_tasks)
    model, tokenizer, device = load_stage_model(model_dir, stage.params, stage.params.evaluate.dtype)
    store = work_store(stage, which, model_dir, model)
    ppl_parts, task_parts, harness_parts, n_new = evaluate_parts(model, tokenizer, device, stage, store)
    return record(which, model, ppl_parts, task_parts, harness_parts, n_new), store


def write(paths: Paths, info: dict, store: PartStore) -> None:
    """The record; then this run's checkpoints and stale ones, all done with, go."""
    write_json(paths.eval_metrics(info["which"]), info)
    for work in store.directory.parent.glob(f"{info['which']}-*"):
        shutil.rmtree(work, ignore_errors=True)


def log(tracker: Tracker, info: dict) -> None:
    """PPL per corpus, accuracy per task, the means, lm-eval's metrics, tokens/s and the accuracy bars in MLflow."""
    tracker.log_metrics(
        {f"ppl_{k}": v for k, v in info["ppl"].items()}
        | {f"acc_{t}": r["acc"] for t, r in info["zero_shot"].items()}
        | {f"lm_eval_{t}_{k}": v for t, r in info["lm_eval"].items() for k, v in r.items() if k != "seconds"}
        | {"mean_acc": info["mean_acc"], "mean_acc_norm": info["mean_acc_norm"], "tokens_per_s": info["tokens_per_s"]}
    )
    fig = accuracy_bars(info["zero_shot"], f"{info['which']} model: zero-shot accuracy (±1 s.e.)")
    tracker.log_figure(fig, f"zero_shot_{info['which']}.png")
    close(fig)


@flow(name="evaluate", log_prints=True)
def evaluate(which: str = "pruned", root: str = ".") -> dict:
    stage = Stage.open(f"evaluate@{which}", root)
    with stage.tracking() as tracker:
        info, store = compute(stage, which)
        write(stage.paths, info, store)
        log(tracker, info)
    ppl = ", ".join(f"{k} {v:.2f}" for k, v in info["ppl"].items())
    print(f"{which}: PPL {ppl}; mean acc {info['mean_acc']:.3f}")
    return info


if __name__ == "__main__":
    stage_main(evaluate, extra_args=lambda p: p.add_argument("--which", choices=WHICH, default="pruned"))
