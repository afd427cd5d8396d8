"""Stage ``prune``: remove the layers ``prune.method`` ranks lowest and save a plain transformers checkpoint.

``select`` reads the set the ``select`` stage chose for this k in ``data/select``; ``shapley`` reads
``data/shapley`` (lowest contributions, with a boundary check on their standard errors); every other method
reads the set that ``score_layers`` recorded in ``data/layer_scores``.
"""

from __future__ import annotations

import math

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from shapprune.models import load_model, parameter_count, save_model
from shapprune.surgery import keep_layers, num_layers
from tasks.layer_tables import choose_from_tables
from tasks.runtime import Stage, stage_main, write_json
from tasks.tracking import log_model_dir


@task(name="prune-and-save", cache_policy=NO_CACHE)
def prune_and_save(stage: Stage, keep: np.ndarray) -> dict:
    model, tokenizer = load_model(str(stage.paths.model))
    before = parameter_count(model)
    keep_layers(model, keep)
    save_model(model, tokenizer, stage.paths.pruned)
    return {
        "parameters_before": before,
        "parameters_after": parameter_count(model),
        "n_layers_after": num_layers(model),
    }


@flow(name="prune", log_prints=True)
def prune(root: str = ".") -> dict:
    stage = Stage.open("prune", root)
    paths = stage.paths
    method, n_layers, choice = choose_from_tables(paths, stage.params.prune.method, stage.params.prune.resolve_n_drop)
    n_drop = len(choice.dropped)
    has_stderr = not math.isnan(choice.boundary_z)  # baselines are deterministic: no boundary check
    with stage.tracking() as tracker:
        if has_stderr and not choice.separated:
            get_run_logger().warning(
                f"the pruning boundary is not resolved: the last dropped and first kept layers differ by "
                f"{choice.boundary_z:.2f} standard errors (< 2); more samples would make the choice firmer"
            )
        info = prune_and_save(stage, choice.mask(n_layers))
        info |= {
            "method": method,
            "n_layers_before": n_layers,
            "n_dropped": n_drop,
            "dropped_layers": choice.dropped,
            "kept_layers": choice.kept,
            "boundary_z": choice.boundary_z if has_stderr else None,
            "boundary_separated": choice.separated if has_stderr else None,
        }
        write_json(paths.pruned / "pruning.json", info)
        tracker.log_metrics({k: info[k] for k in ("n_dropped", "parameters_after", "boundary_z")})
        tracker.set_tags({"dropped_layers": ",".join(map(str, choice.dropped)), "method": method})
        size_mb, with_weights = log_model_dir(tracker, paths.pruned, "pruned_model")  # weights by reference if big
        tracker.set_tags({"pruned_model": "logged" if with_weights else f"by reference ({size_mb:.0f} MiB)"})
        print(
            f"{method}: dropped layers {choice.dropped} ({n_drop} of {n_layers}); "
            f"{info['parameters_after']:,} of {info['parameters_before']:,} parameters kept"
        )
        return info


if __name__ == "__main__":
    stage_main(prune)
