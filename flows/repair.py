"""Stage ``repair``: heal the cut that ``prune`` made, so the pruned model loses less.

``repair.method``: ``none`` (the pruned model as it is), ``linear`` (training-free: for every run of
dropped layers a least-squares map from the MLP output before the run to what the run added, fitted on
the full model's activations over ``data/windows/repair.parquet`` and merged into that MLP's
down-projection: no new parameter), ``lora`` (peft LoRA on the same calibration-source windows, merged
back), or ``linear+lora``. Writes ``data/repaired`` (a ``save_pretrained`` folder with ``repair.json``)
that ``evaluate@repaired`` measures; never reads held-out text.
"""

from __future__ import annotations

import shutil

import numpy as np
from prefect import flow

from shapprune.models import resolve_device
from tasks.repair import WORK, repair_model
from tasks.shared.contracts import kept_mask, write_json
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import log_model_dir


@flow(name="repair", log_prints=True)
def repair(root: str = ".") -> dict:
    stage = Stage.open("repair", root)
    paths, cfg = stage.paths, stage.params.repair
    keep = kept_mask(paths.pruned)

    info = repair_model(paths, cfg, keep, stage.params.base.seed, resolve_device(stage.params.base.device))
    info["dropped_layers"] = np.flatnonzero(~keep).tolist()  # prune's dropped layers, derived from its kept ones
    write_json(paths.repaired / "repair.json", info)
    write_json(paths.metrics_file("repair"), info)
    shutil.rmtree(paths.root.joinpath(*WORK), ignore_errors=True)  # done: its checkpoints are not needed

    linear, lora = info.get("linear") or {}, info.get("lora") or {}
    metrics = {"parameters_added": info["parameters_added"], "windows": info["windows"]}
    metrics |= {"linear_seconds": linear["seconds"], "linear_runs": len(linear["repaired"])} if linear else {}
    metrics |= {"lora_seconds": lora["seconds"], "lora_final_loss": lora["losses"][-1]} if lora else {}
    with stage.tracking() as tracker:
        tracker.log_metrics(metrics)
        for step, loss in enumerate(lora.get("losses", []), 1):
            tracker.log_metrics({"lora_loss": loss}, step=step)
        tracker.set_tags({"repair_method": cfg.method})
        size_mb, with_weights = log_model_dir(tracker, paths.repaired, "repaired_model")  # by reference if big
        tracker.set_tags({"repaired_model": "logged" if with_weights else f"by reference ({size_mb:.0f} MiB)"})
    runs = [f"{r['start']}-{r['stop'] - 1}" for r in linear.get("repaired", [])]
    skipped = [f"{r['start']}-{r['stop'] - 1} ({r['reason']})" for r in linear.get("skipped", [])]
    print(
        f"repair {cfg.method}: {info['n_layers']} layers, {info['parameters_added']} parameters added"
        + (f"; linear maps for runs {runs}" if runs else "")
        + (f"; skipped {skipped}" if skipped else "")
        + (f"; LoRA {lora['steps']} steps, loss {lora['losses'][0]:.3f} -> {lora['losses'][-1]:.3f}" if lora else "")
    )
    return info


if __name__ == "__main__":
    stage_main(repair)
