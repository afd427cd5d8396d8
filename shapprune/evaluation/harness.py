"""Any lm-evaluation-harness task (MMLU, LAMBADA, ...), run by lm-eval itself on a model in memory.

Our own scorer (``zero_shot``) covers the seven offline tasks; every other task a user names goes through
lm-eval's own definitions, data and metrics, on the same pruned, repaired or full model object. Most
tasks download their data from the Hugging Face hub: offline, a task that cannot load its data is refused
with one line that names the fix.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

BOOTSTRAP_ITERS = 1000  # lm-eval's resamples for metrics without a closed-form standard error


class HarnessError(ValueError):
    """A task lm-eval cannot run here; the message is one line that names the fix."""


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes"} for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


@lru_cache(maxsize=4)
def task_manager(include_path: str | None = None) -> Any:
    """lm-eval's index of tasks (about 10 s to build), plus the task YAMLs under ``include_path``."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as err:  # an optional dependency
        raise HarnessError(
            "evaluate.lm_eval_tasks needs lm-evaluation-harness: pip install 'lm_eval==0.4.13' (or set it to [])"
        ) from err
    return TaskManager(include_path=include_path)


def _metrics(entry: dict[str, Any]) -> dict[str, float]:
    """``{"acc,none": 0.5, "acc_stderr,none": 0.1, "alias": ...}`` -> ``{"acc": 0.5, "acc_stderr": 0.1}``."""
    out = {}
    for key, value in entry.items():
        metric, _, filt = key.partition(",")
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # aliases, "N/A" standard errors
        out[metric if filt in ("", "none") else f"{metric}_{filt}"] = float(value)
    return out


def _known(manager: Any, task: str) -> None:
    if task not in manager.all_tasks:
        raise HarnessError(f"evaluate.lm_eval_tasks: lm-eval has no task '{task}'; `lm_eval ls tasks` lists them")


def _cannot_load(task: str, err: Exception) -> HarnessError:
    where = "offline (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set)" if _offline() else "from here"
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return HarnessError(
        f"evaluate.lm_eval_tasks: lm-eval cannot load the data of '{task}' {where} ({first}); run with "
        "internet and HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0, or drop it from the list"
    )


def check_tasks(tasks: list[str], include_path: str | None = None) -> None:
    """Refuse, in one line and before any evaluation, a name lm-eval does not know or a task whose data
    cannot be loaded here; loading fetches the data into the datasets cache, where ``run_task`` finds it."""
    manager = task_manager(include_path)
    for task in tasks:
        _known(manager, task)
        try:
            manager.load([task])
        except (ConnectionError, OSError) as err:
            raise _cannot_load(task, err) from err


def run_task(
    model: Any,
    tokenizer: Any,
    task: str,
    limit: int | None,
    batch_size: int,
    device: str,
    seed: int,
    include_path: str | None = None,
) -> dict[str, float]:
    """lm-eval's metrics of ``task`` (a task or a group, e.g. ``mmlu``) on ``model``, zero-shot.

    ``limit`` is lm-eval's: the first ``limit`` documents of each task (all: None). No global random state is
    seeded; ``seed`` seeds lm-eval's few-shot sampler only. Returns ``{metric: value}`` (``acc``,
    ``acc_stderr``, ...) plus ``n``, the documents scored (summed over a group's tasks).
    """
    manager = task_manager(include_path)
    _known(manager, task)
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    harness = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    try:
        out = lm_eval.simple_evaluate(
            model=harness, tasks=[task], num_fewshot=0, limit=limit, task_manager=manager,
            bootstrap_iters=BOOTSTRAP_ITERS, log_samples=False, random_seed=None, numpy_random_seed=None,
            torch_random_seed=None, fewshot_random_seed=seed,
        )  # fmt: skip
    except (ConnectionError, OSError) as err:
        raise _cannot_load(task, err) from err
    entry = out["results"].get(task) or out.get("groups", {}).get(task, {})
    n = sum(int(v.get("effective", 0)) for v in out.get("n-samples", {}).values())
    return {k: v for k, v in _metrics(entry).items() if not math.isnan(v)} | {"n": float(n)}
