"""Stage ``sample_masks``: stratified Monte Carlo layer masks (strata = number of kept layers)."""

from __future__ import annotations

import numpy as np
from prefect import flow

from shapprune.sampling import split_counts, stratified_masks
from tasks.artifacts import write_masks
from tasks.model import saved_layer_count
from tasks.runtime import Stage, stage_main, write_json


@flow(name="sample_masks", log_prints=True)
def sample_masks(root: str = ".") -> dict:
    stage = Stage.open("sample_masks", root)
    cfg = stage.params.sample_masks
    n_layers = saved_layer_count(stage.paths.model)
    strata = cfg.resolve_strata(n_layers)
    counts = split_counts(cfg.n_masks, len(strata))
    with stage.tracking() as tracker:
        rng = np.random.default_rng([stage.params.base.seed, 1])
        masks = stratified_masks(n_layers, strata, counts, rng, unique=cfg.unique)
        write_masks(masks, stage.paths.masks)
        info = {"n_layers": n_layers, "n_masks": len(masks), "strata": strata, "counts": counts}
        write_json(stage.paths.metrics_file("sample_masks"), info)
        tracker.log_metrics({"n_masks": len(masks), "n_layers": n_layers})
        print(f"{len(masks)} masks over {n_layers} layers; kept-layer strata {dict(zip(strata, counts))}")
        return info


if __name__ == "__main__":
    stage_main(sample_masks)
