"""Stage ``sample_masks``: the layer masks the configured estimator will score on the LLM (its design).

The estimator named in ``estimate_shapley.estimator`` is run ahead on a recording game, so the masks
it asks for are exactly those ``score_masks`` scores and ``estimate_shapley`` later reads back.
"""

from __future__ import annotations

import numpy as np
from prefect import flow

from shapprune.estimators.replay import design
from tasks.shared.artifacts import write_masks
from tasks.shared.contracts import write_json
from tasks.shared.estimator import estimator_call
from tasks.shared.model import saved_layer_count
from tasks.shared.runtime import Stage, stage_main


def compute(stage: Stage) -> tuple[np.ndarray, dict]:
    """The estimator's design: the masks it will ask for (bool[m, L]) and their record."""
    n_layers = saved_layer_count(stage.paths.model)
    call = estimator_call(stage.params, n_layers, design=True)
    masks = design(call.name, n_layers, call.budget, call.rng(), **call.options)  # bool[m, L]
    kept, counts = np.unique(masks.sum(axis=1), return_counts=True)
    info = {
        "n_layers": n_layers,
        "n_masks": len(masks),
        "estimator": call.name,
        "budget": call.budget,
        "masks_per_kept_count": {int(k): int(c) for k, c in zip(kept, counts)},
    }
    return masks, info


@flow(name="sample_masks", log_prints=True)
def sample_masks(root: str = ".") -> dict:
    stage = Stage.open("sample_masks", root)
    with stage.tracking() as tracker:
        masks, info = compute(stage)
        write_masks(masks, stage.paths.masks)
        write_json(stage.paths.metrics_file("sample_masks"), info)
        tracker.log_metrics({"n_masks": info["n_masks"], "n_layers": info["n_layers"]})
    design_of = f"{info['n_masks']} masks over {info['n_layers']} layers for the {info['estimator']} estimator"
    print(f"{design_of}; kept-layer counts {list(info['masks_per_kept_count'])}")
    return info


if __name__ == "__main__":
    stage_main(sample_masks)
