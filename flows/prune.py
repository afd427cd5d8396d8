"""Stage ``prune``: remove the layers ``prune.method`` chose and save a plain transformers checkpoint.

``select`` reads the set the ``select`` stage chose for this k in ``data/select``; ``shapley`` reads
``data/shapley`` (lowest contributions, with a boundary check on their standard errors); every other method
reads the set that ``score_layers`` recorded in ``data/layer_scores``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger
from transformers import PreTrainedModel

from shapprune.prune import PruningChoice
from shapprune.targets import ModelStructure
from tasks.prune import (
    llm_evaluations,
    measured_prediction,
    model_structure,
    prune_model,
    read_choice,
    save_pruned,
    target_metrics,
    target_record,
    target_summary,
)
from tasks.shared.contracts import write_json
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker, log_model_dir


@dataclass(frozen=True)
class Chosen:
    """The set to drop, as the upstream table gives it, and what choosing it cost."""

    method: str  # the table's method (the estimator's name for shapley)
    n_layers: int
    choice: PruningChoice
    llm_evaluations: int | None
    structure: ModelStructure | None = None  # the saved model's parameter counts, read for prune.target


@dataclass(frozen=True)
class Pruned:
    """The pruned model in memory and its record (``data/pruned/pruning.json``)."""

    model: PreTrainedModel
    tokenizer: Any
    info: dict
    metrics: dict  # data/metrics/prune.json: what was reached, and with a target the measured speed


class Prune:
    """Read the chosen set, warn when its boundary is unresolved, drop the layers, save the model and its record."""

    name = "prune"

    def read(self, stage: Stage) -> Chosen:
        cfg = stage.params.prune
        min_z = stage.params.estimate_shapley.boundary_z
        structure = model_structure(stage.paths.model) if cfg.target is not None else None
        method, n_layers, choice = read_choice(
            stage.paths, cfg.method, lambda n: cfg.resolve_n_drop(n, structure), min_z
        )
        return Chosen(method, n_layers, choice, llm_evaluations(stage.paths, cfg.method), structure)

    def compute(self, stage: Stage, chosen: Chosen) -> Pruned:
        choice = chosen.choice
        has_stderr = not math.isnan(choice.boundary_z)  # recorded sets are deterministic: no boundary check
        if has_stderr and not choice.separated:
            get_run_logger().warning(
                f"the pruning boundary is not resolved: the last dropped and first kept layers differ by "
                f"{choice.boundary_z:.2f} standard errors (< {choice.min_z:g}); more samples would make the choice "
                "firmer"
            )
        cfg = stage.params.prune
        target = cfg.target is not None
        model, tokenizer, info = prune_model(stage.paths.model, choice.mask(chosen.n_layers), check_speed=target)
        speed = info.pop("speed", None)
        info |= {
            "method": chosen.method,
            "n_layers_before": chosen.n_layers,
            "n_dropped": len(choice.dropped),
            "dropped_layers": choice.dropped,
            "kept_layers": choice.kept,
            "boundary_z": choice.boundary_z if has_stderr else None,
            "boundary_separated": choice.separated if has_stderr else None,
            "llm_evaluations": chosen.llm_evaluations,
        }
        metrics = {k: info[k] for k in ("n_dropped", "parameters_before", "parameters_after") if k in info}
        if target and chosen.structure is not None:
            info["target"] = target_record(cfg, chosen.structure, choice.dropped, stage.params.export.dtype)
            metrics |= {"target": info["target"]["asked"], **info["target"]["reached"]}
            if speed is not None:
                at_measured = measured_prediction(chosen.structure, choice.dropped, speed)
                metrics |= {**speed, "predicted_speedup_at_measured_cost": at_measured}
        return Pruned(model, tokenizer, info, metrics)

    def write(self, stage: Stage, pruned: Pruned) -> Figures:
        """``save_pretrained`` with the tokenizer into ``data/pruned``, and ``pruning.json`` beside it."""
        save_pruned(pruned.model, pruned.tokenizer, stage.paths.pruned)
        write_json(stage.paths.pruned / "pruning.json", pruned.info)
        write_json(stage.paths.metrics_file("prune"), pruned.metrics)
        return {}

    def log(self, tracker: Tracker, stage: Stage, pruned: Pruned) -> None:
        """Layers dropped, parameters kept, the boundary, and the pruned model (by reference if big)."""
        info = pruned.info
        tracker.log_metrics({k: info[k] for k in ("n_dropped", "parameters_after", "boundary_z")})
        tracker.set_tags({"dropped_layers": ",".join(map(str, info["dropped_layers"])), "method": info["method"]})
        if (target := info.get("target")) is not None:
            tracker.log_metrics(target_metrics(pruned.metrics))
            tracker.set_tags({"target": target["asked"], "target_cost_model": target["cost_model"]})
        size_mb, with_weights = log_model_dir(tracker, stage.paths.pruned, "pruned_model")
        tracker.set_tags({"pruned_model": "logged" if with_weights else f"by reference ({size_mb:.0f} MiB)"})

    def summary(self, pruned: Pruned) -> str:
        info = pruned.info
        dropped = f"{info['dropped_layers']} ({info['n_dropped']} of {info['n_layers_before']})"
        kept = f"{info['parameters_after']:,} of {info['parameters_before']:,} parameters kept"
        line = f"{info['method']}: dropped layers {dropped}; {kept}"
        if (target := info.get("target")) is not None:
            line += "\n" + target_summary(target, pruned.metrics)
        return line

    def returns(self, pruned: Pruned) -> dict:
        return pruned.info


@flow(name="prune", log_prints=True)
def prune(root: str = ".") -> dict:
    return run_stage(Prune(), root)


if __name__ == "__main__":
    stage_main(prune)
