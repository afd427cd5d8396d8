"""Prefect tasks of the ``estimate_shapley`` stage: the scored game, the estimator's replay, the MLP readouts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError
from shapprune.estimators import paper
from shapprune.estimators.base import EstimateResult
from shapprune.estimators.replay import ScoredGame, replay
from shapprune.mask_splits import handle_nonfinite
from shapprune.scoring import utility_from_nll
from shapprune.shapley import ShapleyResult, stratified_shapley, stratum_semivalue
from shapprune.streams import stream
from shapprune.surrogate import MLPSurrogate
from tasks.shared.artifacts import load_surrogate as load_checked_surrogate
from tasks.shared.artifacts import read_masks
from tasks.shared.contracts import ScoringSummary
from tasks.shared.estimator import EstimatorCall
from tasks.shared.runtime import Stage


@task(name="load-surrogate", cache_policy=NO_CACHE)
def load_surrogate(stage: Stage) -> MLPSurrogate:
    """``data/surrogate``, refused when it was fitted for another model than ``base.model``."""
    return load_checked_surrogate(stage.paths.surrogate, stage.params.base.model)


@task(name="scored-game", cache_policy=NO_CACHE)
def scored_game(stage: Stage, n_layers: int) -> tuple[ScoredGame, int, DesignScores]:
    """The scored masks as a game; non-finite PPL ratios (an infinite perplexity) are clipped to 0.

    The estimator replays exactly the masks its design drew, so none can be left out: of the surrogate's two
    policies for non-finite utilities (``fit_surrogate.nonfinite``, ``mask_splits.handle_nonfinite``) only
    ``clip`` applies here, and for PPL ratios (never below 0) it gives 0, the ratio's limit."""
    paths, utility = stage.paths, stage.params.score_masks.utility
    scores, masks = read_masks(paths.scores, n_layers)
    values = scores["utility"].to_numpy(float)
    bad = ~np.isfinite(values)
    if bad.any() and utility != "ppl_ratio":
        raise ConfigError(
            f"{paths.scores}: {int(bad.sum())} masks have non-finite {utility}; set score_masks.utility: ppl_ratio"
        )
    values = handle_nonfinite(values, "clip")[1]
    summary = ScoringSummary.read(paths.metrics_file("score_masks"))
    full = summary.full_nll
    design = (scores["source"] == "design").to_numpy() if "source" in scores else np.ones(len(scores), bool)
    game = ScoredGame(masks, values, utility_from_nll(full, full, utility), str(paths.scores))
    return game, int(bad.sum()), DesignScores(masks[design], values[design], summary)


@dataclass(frozen=True)
class DesignScores:
    """The design masks scored (``bool[m, L]``) and their values, and how scoring stopped."""

    masks: np.ndarray
    values: np.ndarray
    summary: ScoringSummary


@task(name="estimate", cache_policy=NO_CACHE)
def estimate(call: EstimatorCall, game: ScoredGame, scored: DesignScores) -> EstimateResult:
    """The configured estimator replayed on the scored masks (the design ``sample_masks`` drew); when the rounds
    (``score_masks.stop: decision``) scored the design in part, the paper's readout of the design masks scored."""
    if not scored.summary.design_in_part:
        return replay(call.name, game, call.budget, call.rng(), **call.options)
    options = {k: call.options[k] for k in ("surrogate", "surrogate_options", "folds", "readout_samples")}
    return paper.from_scores(scored.masks, scored.values, call.options["strata"], call.rng(), **options)


@task(name="mlp-readouts", cache_policy=NO_CACHE)
def mlp_readouts(surrogate: MLPSurrogate, strata: list[int], n: int, seed: int) -> dict[str, ShapleyResult]:
    """The paper's readouts of the fitted MLP: Shapley (uniform over sizes) and the stratum semivalue."""
    n_layers = surrogate.spec.n_layers
    return {
        "mlp_shapley": stratified_shapley(surrogate.predict, n_layers, n, stream(seed, "mlp_shapley")),
        "mlp_semivalue": stratum_semivalue(surrogate.predict, n_layers, strata, n, stream(seed, "mlp_semivalue")),
    }
