"""Stage ``repair``: heal the cut that ``prune`` made, so the pruned model loses less.

``repair.method``: ``none`` (the pruned model as it is), ``linear`` (training-free: for every run of
dropped layers one least-squares fit on the full model's activations over ``data/windows/repair.parquet``;
``repair.fit: refit`` refits the seam's MLP down-projection on its own input, ``map`` merges a d x d map on
its output into it: no new parameter either way), ``lora`` (peft LoRA on the same calibration-source
windows, merged back), or ``linear+lora`` (the default). Writes ``data/repaired`` (a ``save_pretrained``
folder with ``repair.json``) that ``evaluate@repaired`` measures; never reads held-out text.
"""

from __future__ import annotations

import shutil

import numpy as np
from prefect import flow

from shapprune.models import resolve_device
from tasks.repair import WORK, repair_model
from tasks.shared.contracts import kept_mask, write_json
from tasks.shared.paths import Paths
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker, log_model_dir


def compute(stage: Stage) -> dict:
    """Repair the pruned model (``data/repaired`` is written as it goes); returns the repair record."""
    keep = kept_mask(stage.paths.pruned)
    device = resolve_device(stage.params.base.device)
    info = repair_model(stage.paths, stage.params.repair, keep, stage.params.base.seed, device)
    info["dropped_layers"] = np.flatnonzero(~keep).tolist()  # prune's dropped layers, derived from its kept ones
    return info


def write(paths: Paths, info: dict) -> None:
    """The record beside the weights and as the stage's metrics; the LoRA checkpoints, now done with, go."""
    write_json(paths.repaired / "repair.json", info)
    write_json(paths.metrics_file("repair"), info)
    shutil.rmtree(paths.root.joinpath(*WORK), ignore_errors=True)


def log(tracker: Tracker, paths: Paths, method: str, info: dict) -> None:
    """Seconds, runs, parameters added, the LoRA loss curve and the repaired model (by reference if big)."""
    linear, lora = info.get("linear") or {}, info.get("lora") or {}
    metrics = {"parameters_added": info["parameters_added"], "windows": info["windows"]}
    metrics |= {"linear_seconds": linear["seconds"], "linear_runs": len(linear["repaired"])} if linear else {}
    metrics |= {"lora_seconds": lora["seconds"], "lora_final_loss": lora["losses"][-1]} if lora else {}
    tracker.log_metrics(metrics)
    for step, loss in enumerate(lora.get("losses", []), 1):
        tracker.log_metrics({"lora_loss": loss}, step=step)
    tracker.set_tags({"repair_method": method} | ({"repair_text": info["text"]} if info.get("text") else {}))
    size_mb, with_weights = log_model_dir(tracker, paths.repaired, "repaired_model")
    tracker.set_tags({"repaired_model": "logged" if with_weights else f"by reference ({size_mb:.0f} MiB)"})


def summary(method: str, info: dict) -> str:
    """One line: layers, parameters added, the runs fitted or skipped, the LoRA loss."""
    linear, lora = info.get("linear") or {}, info.get("lora") or {}
    runs = [f"{r['start']}-{r['stop'] - 1}" for r in linear.get("repaired", [])]
    skipped = [f"{r['start']}-{r['stop'] - 1} ({r['reason']})" for r in linear.get("skipped", [])]
    return (
        f"repair {method}: {info['n_layers']} layers, {info['parameters_added']} parameters added"
        + (f"; linear fits for runs {runs}" if runs else "")
        + (f"; skipped {skipped}" if skipped else "")
        + (f"; LoRA {lora['steps']} steps, loss {lora['losses'][0]:.3f} -> {lora['losses'][-1]:.3f}" if lora else "")
    )


@flow(name="repair", log_prints=True)
def repair(root: str = ".") -> dict:
    stage = Stage.open("repair", root)
    info = compute(stage)
    write(stage.paths, info)
    with stage.tracking() as tracker:
        log(tracker, stage.paths, stage.params.repair.method, info)
    print(summary(stage.params.repair.method, info))
    return info


if __name__ == "__main__":
    stage_main(repair)
