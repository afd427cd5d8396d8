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
from dataclasses import dataclass

import numpy as np
from prefect import flow

from shapprune.models import resolve_device
from tasks.repair import WORK, repair_model
from tasks.shared.contracts import kept_mask, write_json
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker, log_model_dir


@dataclass(frozen=True)
class Cut:
    """The layers prune kept and the device the repair runs on."""

    keep: np.ndarray  # bool[L]
    device: str


@dataclass(frozen=True)
class Repaired:
    """The repair method and its record (``data/repaired/repair.json``)."""

    method: str
    info: dict


class Repair:
    """Repair the pruned model with ``repair.method``."""

    name = "repair"

    def read(self, stage: Stage) -> Cut:
        """The kept layers and the device; the repair's task loads the models and the repair windows itself."""
        return Cut(kept_mask(stage.paths.pruned), resolve_device(stage.params.base.device))

    def compute(self, stage: Stage, cut: Cut) -> Repaired:
        """The repair record; the repair's task saves ``data/repaired`` (and LoRA checkpoints on the way)."""
        info = repair_model(stage.paths, stage.params.repair, cut.keep, stage.params.base.seed, cut.device)
        info["dropped_layers"] = np.flatnonzero(~cut.keep).tolist()  # prune's dropped layers, from its kept ones
        return Repaired(stage.params.repair.method, info)

    def write(self, stage: Stage, repaired: Repaired) -> Figures:
        """The record beside the weights and as the stage's metrics; the LoRA checkpoints, now done with, go."""
        paths = stage.paths
        write_json(paths.repaired / "repair.json", repaired.info)
        write_json(paths.metrics_file("repair"), repaired.info)
        shutil.rmtree(paths.root.joinpath(*WORK), ignore_errors=True)
        return {}

    def log(self, tracker: Tracker, stage: Stage, repaired: Repaired) -> None:
        """Seconds, runs, parameters added, the LoRA loss curve and the repaired model (by reference if big)."""
        info = repaired.info
        linear, lora = info.get("linear") or {}, info.get("lora") or {}
        metrics = {"parameters_added": info["parameters_added"], "windows": info["windows"]}
        metrics |= {"linear_seconds": linear["seconds"], "linear_runs": len(linear["repaired"])} if linear else {}
        metrics |= {"lora_seconds": lora["seconds"], "lora_final_loss": lora["losses"][-1]} if lora else {}
        tracker.log_metrics(metrics)
        for step, loss in enumerate(lora.get("losses", []), 1):
            tracker.log_metrics({"lora_loss": loss}, step=step)
        tags = {"repair_method": repaired.method} | ({"repair_text": info["text"]} if info.get("text") else {})
        tracker.set_tags(tags)
        size_mb, with_weights = log_model_dir(tracker, stage.paths.repaired, "repaired_model")
        tracker.set_tags({"repaired_model": "logged" if with_weights else f"by reference ({size_mb:.0f} MiB)"})

    def summary(self, repaired: Repaired) -> str:
        """One line: layers, parameters added, the runs fitted or skipped, the LoRA loss."""
        info = repaired.info
        linear, lora = info.get("linear") or {}, info.get("lora") or {}
        runs = [f"{r['start']}-{r['stop'] - 1}" for r in linear.get("repaired", [])]
        skipped = [f"{r['start']}-{r['stop'] - 1} ({r['reason']})" for r in linear.get("skipped", [])]
        return (
            f"repair {repaired.method}: {info['n_layers']} layers, {info['parameters_added']} parameters added"
            + (f"; linear fits for runs {runs}" if runs else "")
            + (f"; skipped {skipped}" if skipped else "")
            + (
                f"; LoRA {lora['steps']} steps, loss {lora['losses'][0]:.3f} -> {lora['losses'][-1]:.3f}"
                if lora
                else ""
            )
        )

    def returns(self, repaired: Repaired) -> dict:
        return repaired.info


@flow(name="repair", log_prints=True)
def repair(root: str = ".") -> dict:
    return run_stage(Repair(), root)


if __name__ == "__main__":
    stage_main(repair)
