"""Stage ``estimate_shapley``: per-layer contributions with standard errors, from the masks scored on the LLM.

The estimator named in ``estimate_shapley.estimator`` (default ``surrogate_cv``: a surrogate plus a
cross-fitted residual correction, unbiased) is replayed on ``data/scores.parquet``: ``sample_masks``
drew exactly the masks it asks for. The paper's readouts of the fitted MLP (``data/surrogate``) are
written alongside for comparison. A warning is printed (and recorded) when the layers at the pruning
boundary are not separated by their standard errors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError
from shapprune.estimators.base import EstimateResult
from shapprune.estimators.fidelity import heldout_fidelity
from shapprune.estimators.replay import ScoredGame, replay
from shapprune.estimators.uncertainty import BoundaryWarning, check_boundary, contribution_table
from shapprune.scoring import NLL, utility_from_nll
from shapprune.shapley import ShapleyResult, stratified_shapley, stratum_semivalue
from shapprune.surrogate import MLPSurrogate
from tasks.shared.artifacts import load_surrogate as load_checked_surrogate
from tasks.shared.artifacts import read_masks
from tasks.shared.contracts import read_json, write_json
from tasks.shared.estimator import EstimatorCall, estimator_call
from tasks.shared.model import saved_layer_count
from tasks.shared.plots import close, contribution_bars
from tasks.shared.runtime import Stage, stage_main


@task(name="load-surrogate", cache_policy=NO_CACHE)
def load_surrogate(stage: Stage) -> MLPSurrogate:
    return load_checked_surrogate(stage.paths.surrogate, stage.params.base.model)


@task(name="scored-game", cache_policy=NO_CACHE)
def scored_game(stage: Stage, n_layers: int) -> tuple[ScoredGame, int]:
    """The scored masks as a game; non-finite PPL ratios (an infinite perplexity) count as 0."""
    paths, utility = stage.paths, stage.params.score_masks.utility
    scores, masks = read_masks(paths.scores, n_layers)
    values = scores["utility"].to_numpy(float)
    bad = ~np.isfinite(values)
    if bad.any() and utility != "ppl_ratio":
        raise ConfigError(
            f"{paths.scores}: {int(bad.sum())} masks have non-finite {utility}; set score_masks.utility: ppl_ratio"
        )
    values = np.where(bad, 0.0, values)
    info = read_json(paths.metrics_file("score_masks"))
    tokens = int(info["calibration_tokens"])
    full = NLL(float(info["full_nll_mean"]) * tokens, tokens)
    return ScoredGame(masks, values, utility_from_nll(full, full, utility), str(paths.scores)), int(bad.sum())


@task(name="estimate", cache_policy=NO_CACHE)
def estimate(call: EstimatorCall, game: ScoredGame) -> EstimateResult:
    return replay(call.name, game, call.budget, call.rng(), **call.options)


@task(name="mlp-readouts", cache_policy=NO_CACHE)
def mlp_readouts(surrogate: MLPSurrogate, strata: list[int], n: int, seed: int) -> dict[str, ShapleyResult]:
    """The paper's readouts of the fitted MLP: Shapley (uniform over sizes) and the stratum semivalue."""
    n_layers = surrogate.spec.n_layers
    return {
        "mlp_shapley": stratified_shapley(surrogate.predict, n_layers, n, np.random.default_rng([seed, 3, 0])),
        "mlp_semivalue": stratum_semivalue(surrogate.predict, n_layers, strata, n, np.random.default_rng([seed, 3, 1])),
    }


def boundary(result: ShapleyResult, n_drop: int, z_min: float) -> dict:
    """The pruning-boundary check as a record (and a printed warning when unresolved)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BoundaryWarning)
        choice = check_boundary(result, n_drop, z_min)
    message = next((str(w.message) for w in caught if issubclass(w.category, BoundaryWarning)), None)
    if message:
        print(f"WARNING: {message}")
    z = choice.boundary_z
    return {
        "n_drop": n_drop,
        "dropped": choice.dropped,
        "z": z if np.isfinite(z) else None,
        "z_min": z_min,
        "resolved": message is None,
        "warning": message,
    }


@flow(name="estimate_shapley", log_prints=True)
def estimate_shapley(root: str = ".") -> dict:
    stage = Stage.open("estimate_shapley", root)
    cfg, paths, params = stage.params.estimate_shapley, stage.paths, stage.params
    n_layers = saved_layer_count(paths.model)
    call = estimator_call(params, n_layers)
    n_drop = params.prune.resolve_n_drop(n_layers)
    with stage.tracking() as tracker:
        game, n_nonfinite = scored_game(stage, n_layers)
        result = estimate(call, game)
        readouts = mlp_readouts(
            load_surrogate(stage), params.sample_masks.resolve_strata(n_layers), cfg.n_samples, params.base.seed
        )
        table = contribution_table(result, n_drop).rename(columns={"value": "shapley", "stderr": "shapley_se"})
        for name, r in readouts.items():
            table[name], table[f"{name}_se"] = r.values, r.stderr
        check = boundary(result, n_drop, cfg.boundary_z)
        fid = heldout_fidelity(result)
        paths.shapley_csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(paths.shapley_csv, index=False)
        units = result.diagnostics.get("units_per_stratum")
        write_json(
            paths.shapley_json,
            {
                "estimator": call.name,
                "options": call.options,
                "n_evaluations": result.n_evaluations,
                "ranking_low_to_high": result.ranking().tolist(),
                "boundary": check,
                "surrogate_fidelity_out_of_fold": fid,
                "units_per_stratum": units,
                "layers": table.to_dict(orient="records"),
            },
        )
        metrics = {
            "estimator": call.name,
            "n_evaluations": result.n_evaluations,
            "n_nonfinite_as_zero": n_nonfinite,
            "max_stderr": float(result.stderr.max()),
            "sum_contributions": float(result.values.sum()),
            "boundary_z": check["z"],
            "boundary_resolved": check["resolved"],
            "spearman_vs_mlp_shapley": float(
                pd.Series(result.values).corr(pd.Series(readouts["mlp_shapley"].values), method="spearman")
            ),
        }
        if fid is not None:
            metrics.update({f"oof_{k}": v for k, v in fid["overall"].items()})
        write_json(paths.metrics_file("estimate_shapley"), metrics)
        (paths.plots / "estimate_shapley").mkdir(parents=True, exist_ok=True)
        table.to_csv(paths.plots / "estimate_shapley" / "contributions.csv", index=False)
        fig = contribution_bars(
            result.values,
            result.stderr,
            check["dropped"],
            f"layer contributions ({call.name}, {result.n_evaluations} LLM evaluations, ±2 s.e.; red: lowest {n_drop})",
            paths.plots / "estimate_shapley" / "contributions.png",
        )
        tracker.log_figure(fig, "contributions.png")
        close(fig)
        tracker.log_artifact(paths.shapley_csv)
        tracker.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        print(
            f"{call.name} on {result.n_evaluations} scored masks; lowest-contribution layers: "
            f"{result.ranking()[: max(1, n_layers // 3)].tolist()} (boundary z {check['z']})"
        )
        return {"ranking": result.ranking().tolist(), "boundary": check}


if __name__ == "__main__":
    stage_main(estimate_shapley)
