"""Stage ``estimate_shapley``: per-layer contributions read off the surrogate, with standard errors.

Both the paper's stratum-restricted estimate and true Shapley values (uniform over coalition sizes)
are written; ``estimate_shapley.method`` names the one that ``prune`` uses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError
from shapprune.shapley import ShapleyResult, stratified_shapley, stratum_semivalue
from shapprune.surrogate import MLPSurrogate
from tasks.plots import close, contribution_bars
from tasks.runtime import Stage, read_json, stage_main, write_json


@task(name="load-surrogate", cache_policy=NO_CACHE)
def load_surrogate(stage: Stage) -> MLPSurrogate:
    meta = read_json(stage.paths.surrogate / "surrogate.json")
    if meta.get("model") != stage.params.base.model:
        raise ConfigError(
            f"{stage.paths.surrogate}: surrogate was trained for {meta.get('model')}, not {stage.params.base.model}; "
            "rerun `dvc repro fit_surrogate`"
        )
    return MLPSurrogate.load(stage.paths.surrogate)


@task(name="readout", cache_policy=NO_CACHE)
def readout(surrogate: MLPSurrogate, method: str, n_layers: int, strata: list[int], n: int, seed: int) -> ShapleyResult:
    rng = np.random.default_rng([seed, 3, 0 if method == "shapley" else 1])
    if method == "shapley":
        return stratified_shapley(surrogate.predict, n_layers, n, rng)
    return stratum_semivalue(surrogate.predict, n_layers, strata, n, rng)


@flow(name="estimate_shapley", log_prints=True)
def estimate_shapley(root: str = ".") -> dict:
    stage = Stage.open("estimate_shapley", root)
    cfg, paths = stage.params.estimate_shapley, stage.paths
    with stage.tracking() as tracker:
        surrogate = load_surrogate(stage)
        n_layers = surrogate.spec.n_layers
        strata = stage.params.sample_masks.resolve_strata(n_layers)
        results = {
            m: readout(surrogate, m, n_layers, strata, cfg.n_samples, stage.params.base.seed)
            for m in ("shapley", "stratum_semivalue")
        }
        chosen = results[cfg.method]
        table = pd.DataFrame({"layer": np.arange(n_layers)})
        for m, r in results.items():
            table[m], table[f"{m}_se"] = r.values, r.stderr
        table["rank"] = np.argsort(chosen.ranking()) + 1  # 1 = lowest contribution (pruned first)
        paths.shapley_csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(paths.shapley_csv, index=False)
        write_json(
            paths.shapley_json,
            {
                "method": cfg.method,
                "n_samples_per_layer": cfg.n_samples,
                "strata": strata,
                "ranking_low_to_high": chosen.ranking().tolist(),
                "layers": table.to_dict(orient="records"),
            },
        )
        (paths.plots / "estimate_shapley").mkdir(parents=True, exist_ok=True)
        table.to_csv(paths.plots / "estimate_shapley" / "contributions.csv", index=False)
        fig = contribution_bars(
            chosen.values,
            chosen.stderr,
            [],
            f"layer contributions ({cfg.method}, ±2 s.e.)",
            paths.plots / "estimate_shapley" / "contributions.png",
        )
        tracker.log_figure(fig, "contributions.png")
        close(fig)
        tracker.log_artifact(paths.shapley_csv)
        tracker.log_metrics({"max_stderr": float(chosen.stderr.max()), "sum_contributions": float(chosen.values.sum())})
        print("lowest-contribution layers:", chosen.ranking()[: max(1, n_layers // 3)].tolist())
        return {"ranking": chosen.ranking().tolist()}


if __name__ == "__main__":
    stage_main(estimate_shapley)
