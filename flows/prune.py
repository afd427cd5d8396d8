"""Stage ``prune``: remove the layers ``prune.method`` chose and save a plain transformers checkpoint.

``select`` reads the set the ``select`` stage chose for this k in ``data/select``; ``shapley`` reads
``data/shapley`` (lowest contributions, with a boundary check on their standard errors); every other method
reads the set that ``score_layers`` recorded in ``data/layer_scores``.
"""

from __future__ import annotations

import math

from prefect import flow, get_run_logger

from tasks.prune import choose_layers, llm_evaluations, prune_and_save
from tasks.shared.contracts import write_json
from tasks.shared.paths import Paths
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker, log_model_dir


def compute_and_write(stage: Stage) -> dict:
    """Read the chosen set, warn when its boundary is unresolved, save the pruned model and its record."""
    paths, cfg = stage.paths, stage.params.prune
    min_z = stage.params.estimate_shapley.boundary_z
    method, n_layers, choice = choose_layers(paths, cfg.method, cfg.resolve_n_drop, min_z)
    has_stderr = not math.isnan(choice.boundary_z)  # recorded sets are deterministic: no boundary check
    if has_stderr and not choice.separated:
        get_run_logger().warning(
            f"the pruning boundary is not resolved: the last dropped and first kept layers differ by "
            f"{choice.boundary_z:.2f} standard errors (< {min_z:g}); more samples would make the choice firmer"
        )
    info = prune_and_save(paths, choice.mask(n_layers))
    info |= {
        "method": method,
        "n_layers_before": n_layers,
        "n_dropped": len(choice.dropped),
        "dropped_layers": choice.dropped,
        "kept_layers": choice.kept,
        "boundary_z": choice.boundary_z if has_stderr else None,
        "boundary_separated": choice.separated if has_stderr else None,
        "llm_evaluations": llm_evaluations(paths, cfg.method),
    }
    write_json(paths.pruned / "pruning.json", info)
    return info


def log(tracker: Tracker, paths: Paths, info: dict) -> None:
    """Layers dropped, parameters kept, the boundary, and the pruned model (by reference if big)."""
    tracker.log_metrics({k: info[k] for k in ("n_dropped", "parameters_after", "boundary_z")})
    tracker.set_tags({"dropped_layers": ",".join(map(str, info["dropped_layers"])), "method": info["method"]})
    size_mb, with_weights = log_model_dir(tracker, paths.pruned, "pruned_model")
    tracker.set_tags({"pruned_model": "logged" if with_weights else f"by reference ({size_mb:.0f} MiB)"})


@flow(name="prune", log_prints=True)
def prune(root: str = ".") -> dict:
    stage = Stage.open("prune", root)
    info = compute_and_write(stage)  # the model is saved before tracking: a tracking failure cannot lose it
    with stage.tracking() as tracker:
        log(tracker, stage.paths, info)
    dropped = f"{info['dropped_layers']} ({info['n_dropped']} of {info['n_layers_before']})"
    kept = f"{info['parameters_after']:,} of {info['parameters_before']:,} parameters kept"
    print(f"{info['method']}: dropped layers {dropped}; {kept}")
    return info


if __name__ == "__main__":
    stage_main(prune)
