"""Stage ``evaluate`` (``@full``, ``@pruned``, ``@repaired``): held-out perplexity, zero-shot accuracy, lm-eval tasks.

Every held-out corpus, every zero-shot task and every ``lm_eval_tasks`` entry is a part, checkpointed as soon
as it is done under ``data/.evaluate_work/<which>-<fingerprint>/``, so a killed run resumes with the parts it
had not finished.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import flow

from shapprune.checkpoint import PartStore
from shapprune.evaluation.harness import check_tasks
from shapprune.models import parameter_count
from shapprune.surgery import num_layers
from tasks.evaluate import evaluate_parts, work_store
from tasks.shared.contracts import write_json
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.model import load_stage_model
from tasks.shared.plots import accuracy_bars
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker

WHICH = ("full", "pruned", "repaired")  # data/model, data/pruned, data/repaired


@dataclass(frozen=True)
class Model:
    """The model evaluated, where it was saved and the device its inputs go to."""

    model_dir: Path
    model: object
    tokenizer: object
    device: str


@dataclass(frozen=True)
class Evaluated:
    """The model's record (``data/metrics/eval_<which>.json``) and the checkpoints it was assembled from."""

    info: dict
    store: PartStore


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


class Evaluate:
    """Evaluate (or read back from the checkpoints) every part of the ``which`` model."""

    name = "evaluate"  # an instance's is its foreach item's, evaluate@<which>

    def __init__(self, which: str) -> None:
        self.which = which
        self.name = f"evaluate@{which}"

    def read(self, stage: Stage) -> Model:
        """The ``which`` model; an unknown lm-eval task or its unreachable data stops here, before any work."""
        model_dir = {"full": stage.paths.model, "pruned": stage.paths.pruned, "repaired": stage.paths.repaired}
        model_dir = model_dir[self.which]
        if stage.params.evaluate.lm_eval_tasks:
            check_tasks(stage.params.evaluate.lm_eval_tasks)
        model, tokenizer, device = load_stage_model(model_dir, stage.params, stage.params.evaluate.dtype)
        return Model(model_dir, model, tokenizer, device)

    def compute(self, stage: Stage, loaded: Model) -> Evaluated:
        model = loaded.model
        store = work_store(stage, self.which, loaded.model_dir, model)
        ppl_parts, task_parts, harness_parts, n_new = evaluate_parts(
            model, loaded.tokenizer, loaded.device, stage, store
        )
        return Evaluated(record(self.which, model, ppl_parts, task_parts, harness_parts, n_new), store)

    def write(self, stage: Stage, evaluated: Evaluated) -> Figures:
        """The record; then this run's checkpoints and stale ones, all done with, go. The accuracy bars are
        drawn for MLflow only (``dvc.yaml`` declares no image for this stage)."""
        info = evaluated.info
        write_json(stage.paths.eval_metrics(info["which"]), info)
        for work in evaluated.store.directory.parent.glob(f"{info['which']}-*"):
            shutil.rmtree(work, ignore_errors=True)
        fig = accuracy_bars(info["zero_shot"], f"{info['which']} model: zero-shot accuracy (±1 s.e.)")
        return {f"zero_shot_{info['which']}.png": fig}

    def log(self, tracker: Tracker, stage: Stage, evaluated: Evaluated) -> None:
        """PPL per corpus, accuracy per task, the means, lm-eval's metrics and tokens/s in MLflow."""
        info = evaluated.info
        tracker.log_metrics(
            {f"ppl_{k}": v for k, v in info["ppl"].items()}
            | {f"acc_{t}": r["acc"] for t, r in info["zero_shot"].items()}
            | {f"lm_eval_{t}_{k}": v for t, r in info["lm_eval"].items() for k, v in r.items() if k != "seconds"}
            | {
                "mean_acc": info["mean_acc"],
                "mean_acc_norm": info["mean_acc_norm"],
                "tokens_per_s": info["tokens_per_s"],
            }
        )

    def summary(self, evaluated: Evaluated) -> str:
        info = evaluated.info
        ppl = ", ".join(f"{k} {v:.2f}" for k, v in info["ppl"].items())
        return f"{self.which}: PPL {ppl}; mean acc {info['mean_acc']:.3f}"

    def returns(self, evaluated: Evaluated) -> dict:
        return evaluated.info


@flow(name="evaluate", log_prints=True)
def evaluate(which: str = "pruned", root: str = ".") -> dict:
    return run_stage(Evaluate(which), root)


if __name__ == "__main__":
    stage_main(evaluate, extra_args=lambda p: p.add_argument("--which", choices=WHICH, default="pruned"))
