"""Stage ``sample_masks``: the layer masks the configured estimator will score on the LLM (its design).

The estimator named in ``estimate_shapley.estimator`` is run ahead on a recording game, so the masks
it asks for are exactly those ``score_masks`` scores and ``estimate_shapley`` later reads back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prefect import flow

from shapprune.estimators.replay import design
from shapprune.rounds import interleave_by_size
from tasks.shared.artifacts import write_masks
from tasks.shared.contracts import write_json
from tasks.shared.estimator import estimator_call
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.model import saved_layer_count
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


@dataclass(frozen=True)
class Design:
    """The masks the estimator will ask for and their record."""

    masks: np.ndarray  # bool[m, L]
    info: dict  # data/metrics/sample_masks.json


class SampleMasks:
    """The estimator's design: the masks it will ask for, drawn from its own stream."""

    name = "sample_masks"

    def read(self, stage: Stage) -> int:
        """The saved model's number of layers."""
        return saved_layer_count(stage.paths.model)

    def compute(self, stage: Stage, n_layers: int) -> Design:
        call = estimator_call(stage.params, n_layers, design=True)
        # interleaved over kept-layer counts: every prefix of whole rounds (score_masks.stop: decision) is balanced
        masks = interleave_by_size(design(call.name, n_layers, call.budget, call.rng(), **call.options))  # [m, L]
        kept, counts = np.unique(masks.sum(axis=1), return_counts=True)
        info = {
            "n_layers": n_layers,
            "n_masks": len(masks),
            "estimator": call.name,
            "budget": call.budget,
            "masks_per_kept_count": {int(k): int(c) for k, c in zip(kept, counts)},
            "order": "interleaved over kept-layer counts",
        }
        return Design(masks, info)

    def write(self, stage: Stage, drawn: Design) -> Figures:
        """The masks (parquet) and their record."""
        write_masks(drawn.masks, stage.paths.masks)
        write_json(stage.paths.metrics_file("sample_masks"), drawn.info)
        return {}

    def log(self, tracker: Tracker, stage: Stage, drawn: Design) -> None:
        tracker.log_metrics({"n_masks": drawn.info["n_masks"], "n_layers": drawn.info["n_layers"]})

    def summary(self, drawn: Design) -> str:
        info = drawn.info
        design_of = f"{info['n_masks']} masks over {info['n_layers']} layers for the {info['estimator']} estimator"
        return f"{design_of}; kept-layer counts {list(info['masks_per_kept_count'])}"

    def returns(self, drawn: Design) -> dict:
        return drawn.info


@flow(name="sample_masks", log_prints=True)
def sample_masks(root: str = ".") -> dict:
    return run_stage(SampleMasks(), root)


if __name__ == "__main__":
    stage_main(sample_masks)
