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
from prefect import flow

from shapprune.estimators.base import EstimateResult
from shapprune.estimators.fidelity import heldout_fidelity
from shapprune.estimators.replay import ScoredGame
from shapprune.estimators.uncertainty import BoundaryWarning, check_boundary, contribution_table
from shapprune.shapley import ShapleyResult
from shapprune.surrogate import MLPSurrogate
from tasks.estimate_shapley import DesignScores, estimate, load_surrogate, mlp_readouts, scored_game
from tasks.shared.contracts import write_json
from tasks.shared.estimator import EstimatorCall, estimator_call
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.model import saved_layer_count
from tasks.shared.plots import contribution_bars
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


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


@dataclass(frozen=True)
class Scored:
    """The scored masks as a game, how many non-finite utilities count as 0, and the fitted surrogate."""

    n_layers: int
    game: ScoredGame
    n_nonfinite: int
    surrogate: MLPSurrogate
    design: DesignScores  # the design masks scored and how scoring stopped


class EstimateShapley:
    """Replay the estimator on the scored masks, read out the MLP, check the pruning boundary."""

    name = "estimate_shapley"

    def read(self, stage: Stage) -> Scored:
        n_layers = saved_layer_count(stage.paths.model)
        game, n_nonfinite, design = scored_game(stage, n_layers)
        return Scored(n_layers, game, n_nonfinite, load_surrogate(stage), design)

    def compute(self, stage: Stage, scored: Scored) -> Estimate:
        cfg, params, n_layers = stage.params.estimate_shapley, stage.params, scored.n_layers
        call = estimator_call(params, n_layers)
        n_drop = params.prune.resolve_n_drop(n_layers)
        result = estimate(call, scored.game, scored.design)
        readouts = mlp_readouts(
            scored.surrogate, params.sample_masks.resolve_strata(n_layers), cfg.n_samples, params.base.seed
        )
        table = contribution_table(result, n_drop).rename(columns={"value": "shapley", "stderr": "shapley_se"})
        for name, r in readouts.items():
            table[name], table[f"{name}_se"] = r.values, r.stderr
        check = boundary(result, n_drop, cfg.boundary_z)
        fid = heldout_fidelity(result)
        metrics = {
            "estimator": call.name,
            "n_evaluations": result.n_evaluations,
            "n_llm_evaluations": scored.design.summary.n_masks,  # design masks and the rounds' proposals
            "stop_reason": scored.design.summary.stop_reason or "design",
            "n_nonfinite_as_zero": scored.n_nonfinite,
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

    def write(self, stage: Stage, est: Estimate) -> Figures:
        """The Shapley table (CSV + JSON), the metrics, plot data and the contribution bars."""
        paths, result, table = stage.paths, est.result, est.table
        paths.shapley_csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(paths.shapley_csv, index=False)
        write_json(
            paths.shapley_json,
            {
                "estimator": est.call.name,
                "options": est.call.options,
                "n_evaluations": result.n_evaluations,
                "n_llm_evaluations": est.metrics["n_llm_evaluations"],
                "stop_reason": est.metrics["stop_reason"],
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
        bars = contribution_bars(
            result.values, result.stderr, est.boundary["dropped"], title, out / "contributions.png"
        )
        return {"contributions.png": bars}

    def log(self, tracker: Tracker, stage: Stage, est: Estimate) -> None:
        """The table and the numeric metrics in MLflow."""
        tracker.log_artifact(stage.paths.shapley_csv)
        tracker.log_metrics({k: float(v) for k, v in est.metrics.items() if isinstance(v, (int, float))})

    def summary(self, est: Estimate) -> str:
        ranking = est.result.ranking().tolist()
        why = {"resolved": "the choice at prune's k was resolved", "cap": "the cap was reached"}
        stopped = why.get(est.metrics["stop_reason"], "the whole design was scored")
        return (
            f"{est.call.name} on {est.result.n_evaluations} scored design masks ({stopped}; "
            f"{est.metrics['n_llm_evaluations']} LLM evaluations with the rounds' proposals), each value with its "
            f"95 % interval in data/shapley/shapley.csv; lowest-contribution layers: "
            f"{ranking[: max(1, len(ranking) // 3)]} (boundary z {est.boundary['z']})"
        )

    def returns(self, est: Estimate) -> dict:
        return {"ranking": est.result.ranking().tolist(), "boundary": est.boundary}


@flow(name="estimate_shapley", log_prints=True)
def estimate_shapley(root: str = ".") -> dict:
    return run_stage(EstimateShapley(), root)


if __name__ == "__main__":
    stage_main(estimate_shapley)
