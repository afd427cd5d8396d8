"""Prefect tasks of the ``evaluate`` stage: perplexity, zero-shot accuracy and lm-eval tasks, each part
checkpointed as soon as it is done."""

from __future__ import annotations

import inspect
import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.checkpoint import PartStore, fingerprint
from shapprune.evaluation.harness import run_task
from shapprune.evaluation.zero_shot import evaluate_tasks
from shapprune.scoring import window_nll
from tasks.shared.artifacts import read_windows
from tasks.shared.guards import fault_point
from tasks.shared.progress import StepProgress
from tasks.shared.runtime import Stage

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
