"""Stage ``prune``: remove the lowest-contribution layers and save a plain transformers checkpoint."""

from __future__ import annotations

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from shapprune.models import load_model, parameter_count, save_model
from shapprune.prune import drop_lowest
from shapprune.surgery import keep_layers, num_layers
from tasks.runtime import Stage, read_json, stage_main, write_json


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
    table = read_json(paths.shapley_json)
    method = table["method"]
    values = np.array([row[method] for row in table["layers"]])
    stderr = np.array([row[f"{method}_se"] for row in table["layers"]])
    n_drop = stage.params.prune.resolve_n_drop(len(values))
    with stage.tracking() as tracker:
        choice = drop_lowest(values, stderr, n_drop)
        if not choice.separated:
            get_run_logger().warning(
                f"the pruning boundary is not resolved: the last dropped and first kept layers differ by "
                f"{choice.boundary_z:.2f} standard errors (< 2); more samples would make the choice firmer"
            )
        info = prune_and_save(stage, choice.mask(len(values)))
        info |= {
            "method": method,
            "n_layers_before": len(values),
            "n_dropped": n_drop,
            "dropped_layers": choice.dropped,
            "kept_layers": choice.kept,
            "boundary_z": choice.boundary_z,
            "boundary_separated": choice.separated,
        }
        write_json(paths.pruned / "pruning.json", info)
        tracker.log_metrics({k: info[k] for k in ("n_dropped", "parameters_after", "boundary_z")})
        tracker.set_tags({"dropped_layers": ",".join(map(str, choice.dropped))})
        print(
            f"dropped layers {choice.dropped} ({n_drop} of {len(values)}); "
            f"{info['parameters_after']:,} of {info['parameters_before']:,} parameters kept"
        )
        return info


if __name__ == "__main__":
    stage_main(prune)
