"""Stage ``estimate_shapley``: per-layer contributions with standard errors, from the masks scored on the LLM.

The estimator named in ``estimate_shapley.estimator`` (default ``paper``: the MLP surrogate's stratum
readout with jackknife standard errors) is replayed on ``data/scores.parquet``: ``sample_masks`` drew
exactly the masks it asks for. The paper's readouts of the fitted MLP (``data/surrogate``) are
written alongside for comparison. A warning is printed (and recorded) when the layers at the pruning
boundary are not separated by their standard errors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError
from shapprune.estimators.base import EstimateResult
from shapprune.estimators.fidelity import heldout_fidelity
from shapprune.estimators.replay import ScoredGame, replay
from shapprune.estimators.uncertainty import BoundaryWarning, check_boundary, contribution_table
from shapprune.scoring import utility_from_nll
from shapprune.shapley import ShapleyResult, stratified_shapley, stratum_semivalue
from shapprune.streams import stream
from shapprune.surrogate import MLPSurrogate
from tasks.shared.artifacts import load_surrogate as load_checked_surrogate
from tasks.shared.artifacts import read_masks
from tasks.shared.contracts import ScoringSummary, write_json
from tasks.shared.estimator import EstimatorCall, estimator_call
from tasks.shared.model import saved_layer_count
from tasks.shared.paths import Paths
from tasks.shared.plots import close, contribution_bars
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


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
    full = ScoringSummary.read(paths.metrics_file("score_masks")).full_nll
    return ScoredGame(masks, values, utility_from_nll(full, full, utility), str(paths.scores)), int(bad.sum())


@task(name="estimate", cache_policy=NO_CACHE)
def estimate(call: EstimatorCall, game: ScoredGame) -> EstimateResult:
    return replay(call.name, game, call.budget, call.rng(), **call.options)


@task(name="mlp-readouts", cache_policy=NO_CACHE)
def mlp_readouts(surrogate: MLPSurrogate, strata: list[int], n: int, seed: int) -> dict[str, ShapleyResult]:
    """The paper's readouts of the fitted MLP: Shapley (uniform over sizes) and the stratum semivalue."""
    n_layers = surrogate.spec.n_layers
    return {
        "mlp_shapley": stratified_shapley(surrogate.predict, n_layers, n, stream(seed, "mlp_shapley")),
        "mlp_semivalue": stratum_semivalue(surrogate.predict, n_layers, strata, n, stream(seed, "mlp_semivalue")),
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


@dataclass(frozen=True)
class Estimate:
    """The contribution estimate, its table (the paper's MLP readouts beside it) and its records."""

    call: EstimatorCall
    result: EstimateResult
    table: pd.DataFrame  # one row per layer: shapley, shapley_se, mlp_shapley(_se), mlp_semivalue(_se), ...
    boundary: dict
    fidelity: dict | None
    metrics: dict  # data/metrics/estimate_shapley.json
    n_drop: int


def compute(stage: Stage) -> Estimate:
    """Replay the estimator on the scored masks, read out the MLP, check the pruning boundary."""
    cfg, paths, params = stage.params.estimate_shapley, stage.paths, stage.params
    n_layers = saved_layer_count(paths.model)
    call = estimator_call(params, n_layers)
    n_drop = params.prune.resolve_n_drop(n_layers)
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
    return Estimate(call, result, table, check, fid, metrics, n_drop)


def write(paths: Paths, est: Estimate):
    """The Shapley table (CSV + JSON), the metrics, plot data and the contribution bars; returns the figure."""
    result, table = est.result, est.table
    paths.shapley_csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(paths.shapley_csv, index=False)
    write_json(
        paths.shapley_json,
        {
            "estimator": est.call.name,
            "options": est.call.options,
            "n_evaluations": result.n_evaluations,
            "ranking_low_to_high": result.ranking().tolist(),
            "boundary": est.boundary,
            "surrogate_fidelity_out_of_fold": est.fidelity,
            "units_per_stratum": result.diagnostics.get("units_per_stratum"),
            "layers": table.to_dict(orient="records"),
        },
    )
    write_json(paths.metrics_file("estimate_shapley"), est.metrics)
    out = paths.plots / "estimate_shapley"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "contributions.csv", index=False)
    title = (
        f"layer contributions ({est.call.name}, {result.n_evaluations} LLM evaluations, ±2 s.e.; "
        f"red: lowest {est.n_drop})"
    )
    return contribution_bars(result.values, result.stderr, est.boundary["dropped"], title, out / "contributions.png")


def log(tracker: Tracker, paths: Paths, est: Estimate, fig) -> None:
    """The bars, the table and the numeric metrics in MLflow."""
    tracker.log_figure(fig, "contributions.png")
    close(fig)
    tracker.log_artifact(paths.shapley_csv)
    tracker.log_metrics({k: float(v) for k, v in est.metrics.items() if isinstance(v, (int, float))})


@flow(name="estimate_shapley", log_prints=True)
def estimate_shapley(root: str = ".") -> dict:
    stage = Stage.open("estimate_shapley", root)
    with stage.tracking() as tracker:
        est = compute(stage)
        fig = write(stage.paths, est)
        log(tracker, stage.paths, est, fig)
    ranking = est.result.ranking().tolist()
    print(
        f"{est.call.name} on {est.result.n_evaluations} scored masks; lowest-contribution layers: "
        f"{ranking[: max(1, len(ranking) // 3)]} (boundary z {est.boundary['z']})"
    )
    return {"ranking": ranking, "boundary": est.boundary}


if __name__ == "__main__":
    stage_main(estimate_shapley)
