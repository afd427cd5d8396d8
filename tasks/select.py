"""Prefect tasks of the ``select`` stage: inputs from the earlier stages, the search on the LLM, its artifacts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError
from shapprune.estimators.budget import known_values, mask_key
from shapprune.estimators.regressors import Predictor
from shapprune.game import LayerGame
from shapprune.mask_splits import handle_nonfinite
from shapprune.models import load_model, resolve_device
from shapprune.repair.game import RepairedLayerGame
from shapprune.scoring import utility_from_nll
from shapprune.select import Screen, SearchConfig, Selection, budgeted_select, select_subsets, surrogate_fit
from shapprune.select.verify import Fit
from shapprune.streams import stream
from shapprune.types import Mask, Utility
from tasks.shared.artifacts import load_surrogate, read_masks, read_repair_windows, read_windows, write_table
from tasks.shared.contracts import ShapleyTable, write_json
from tasks.shared.model import load_stage_model
from tasks.shared.paths import Paths
from tasks.shared.runtime import Stage


@dataclass
class SearchInputs:
    """What the search starts from: masks already scored on the LLM, the contributions and the surrogate."""

    masks: Mask  # bool[n, L], as fit_surrogate.nonfinite leaves them (empty when the budgeted search reuses none)
    utilities: Utility
    contributions: np.ndarray | None  # float[L] (data/shapley, column "shapley"); None for the budgeted search
    surrogate: Predictor | None
    n_scored: int = 0  # score_masks' LLM evaluations the search reuses (counted in its total cost)


@task(name="load-search-inputs", cache_policy=NO_CACHE)
def load_inputs(stage: Stage, n_layers: int) -> SearchInputs:
    """Scored masks (``data/scores.parquet``), contributions (``data/shapley``), the surrogate (``data/surrogate``)."""
    paths, cfg = stage.paths, stage.params.select
    budgeted = cfg.strategy == "budgeted"  # the LLM alone; score_masks' values reused only when asked and comparable
    if budgeted and not (cfg.reuse_scores and cfg.repair == "none" and paths.scores.is_file()):
        return SearchInputs(np.zeros((0, n_layers), bool), np.zeros(0), None, None)
    scores, masks = read_masks(paths.scores, n_layers)
    # non-finite utilities as the surrogate's fit treats them (fit_surrogate.nonfinite: excluded, or clipped)
    keep, utilities = handle_nonfinite(scores["utility"].to_numpy(float), stage.params.fit_surrogate.nonfinite)
    if budgeted:
        return SearchInputs(masks[keep], utilities[keep], None, None, len(utilities))
    contributions = ShapleyTable.read(paths.shapley_json, n_layers).values
    surrogate = load_surrogate(paths.surrogate, stage.params.base.model)
    return SearchInputs(masks[keep], utilities[keep], contributions, surrogate.predict, len(utilities))


@task(name="search-subsets", cache_policy=NO_CACHE)
def search(stage: Stage, inputs: SearchInputs, n_drops: list[int]) -> tuple[Selection, dict]:
    """Build the calibration and validation games on the LLM and run the subset search; returns (result, info)."""
    params, paths, cfg = stage.params, stage.paths, stage.params.select
    model, _, device = load_stage_model(paths.model, params)
    scoring = params.score_masks
    games = _games(stage, model, ("calibration",) if cfg.strategy == "budgeted" else ("calibration", "validation"))
    if "calibration" not in games:
        raise ConfigError(f"{paths.calibration}: no calibration windows; rerun `dvc repro prepare_data`")
    calibration, validation = games["calibration"], games.get("validation")
    full = utility_from_nll(calibration.full, calibration.full, scoring.utility)
    info = {
        "strategy": cfg.strategy,
        "repair": cfg.repair,
        "device": device,
        "design_evaluations": inputs.n_scored,
        "tokens_per_evaluation": int(np.prod(_windows(calibration).shape)),
        "calibration_full_ppl": calibration.full.perplexity,
        "validation_full_ppl": None if validation is None else validation.full.perplexity,
        "validation_windows": 0 if validation is None else len(_windows(validation)),
    }
    budget = cfg.evaluations(calibration.n_players, n_drops)  # select.budget, in evaluations
    if cfg.strategy == "budgeted":
        known = known_values(calibration.n_players, full=full)
        known |= {mask_key(m): float(v) for m, v in zip(inputs.masks, inputs.utilities)}
        screen = _screen(stage, calibration)
        info |= {"screen_windows": cfg.screen_windows, "screen_cost": None if screen is None else screen.cost}
        selection = budgeted_select(
            calibration, n_drops, budget, stream(params.base.seed, "select"), known=known,
            log_utility=scoring.utility == "ppl_ratio", screen=screen,
        )  # fmt: skip
        info["n_screen_evaluations"] = selection.n_screen_evaluations
        info["equivalent_evaluations"] = selection.n_evaluations + (
            0.0 if screen is None else screen.cost * selection.n_screen_evaluations
        )
        return selection, info | fit_cost(calibration)
    # the masks scored up front are values of the unrepaired game: with select.repair they only train the
    # round-0 surrogate (its proposals), never stand in for a repaired measurement
    scored = (inputs.masks, inputs.utilities) if cfg.repair == "none" else (inputs.masks[:0], inputs.utilities[:0])
    options = params.fit_surrogate.mlp_options() if cfg.surrogate == "mlp" else {}
    fit, rng = surrogate_fit(cfg.surrogate, options), stream(params.base.seed, "select")
    selection = select_subsets(
        calibration,
        n_drops,
        inputs.contributions,
        *scored,
        fit,
        rng,
        validation=validation,
        predict=round0_predictor(inputs, cfg.surrogate, cfg.repair, fit, rng),
        config=SearchConfig(budget, cfg.per_k_candidates, cfg.beam_width, cfg.n_blocks, cfg.rounds),
        known=known_values(calibration.n_players, full=full),
    )
    return selection, info | fit_cost(calibration, validation)


def round0_predictor(inputs: SearchInputs, surrogate: str, repair: str, fit: Fit, rng: np.random.Generator):
    """The surrogate that proposes in round 0: the fit_surrogate stage's MLP (``select.surrogate: mlp``); with
    ``select.repair``, where the scored masks are no values of the game searched, ``fit`` on them; else None
    (``select_subsets`` fits it on the scored masks it is given)."""
    if surrogate == "mlp":
        return inputs.surrogate
    return fit(inputs.masks, inputs.utilities, rng) if repair != "none" else None


def fit_cost(*games: LayerGame | RepairedLayerGame | None) -> dict:
    """What the repaired games paid beside their evaluations (they share one set of fits): the runs fitted and
    the passes over the fit windows, also as layer-token forwards; nothing for the plain game."""
    repaired = [g for g in games if isinstance(g, RepairedLayerGame)]
    if not repaired:
        return {}
    return {
        "fit_runs": len(repaired[0].fits),
        "fit_passes": sum(g.fit_passes for g in repaired),
        "fit_layer_token_forwards": sum(g.fit_layer_tokens for g in repaired),
    }


def _screen(stage: Stage, calibration: LayerGame | RepairedLayerGame) -> Screen | None:
    """``select.screen_windows``: the calibration game on its first windows, paid at their share of the tokens."""
    cfg, scoring = stage.params.select, stage.params.score_masks
    if not cfg.screen_windows:
        return None
    windows = _windows(calibration)  # [n, T]
    if cfg.repair != "none" or not isinstance(calibration, LayerGame):
        raise ConfigError("select.screen_windows screens the unrepaired game only; set select.repair: none or 0")
    if cfg.screen_windows >= len(windows):
        raise ConfigError(
            f"select.screen_windows: {cfg.screen_windows} of {len(windows)} calibration windows is no screen; "
            f"use 1 to {len(windows) - 1}, or 0"
        )
    game = LayerGame(
        calibration.model, windows[: cfg.screen_windows], utility=scoring.utility, batch_size=scoring.batch_size,
        prefix_reuse=scoring.prefix_reuse, cache_mib=scoring.cache_mib,
    )  # fmt: skip
    return Screen(game, cfg.screen_windows / len(windows))


def _windows(game: LayerGame | RepairedLayerGame) -> np.ndarray:
    return game.windows if isinstance(game, LayerGame) else game.score_windows


def _games(
    stage: Stage, model, names: tuple[str, ...] = ("calibration", "validation")
) -> dict[str, LayerGame | RepairedLayerGame]:
    """The calibration and validation games select verifies on: plain, or after the linear repair of each mask.

    ``select.repair: linear`` scores each candidate after its runs are repaired with the fits the repair stage
    makes (``repair.ridge``, ``repair.loss``, ``repair.fit`` on the repair windows, on the full model in fp32:
    the evaluated model when it is fp32, else an fp32 copy loaded from ``data/model``); both games share them.
    """
    params, paths, scoring = stage.params, stage.paths, stage.params.score_masks
    games: dict[str, LayerGame | RepairedLayerGame] = {}
    fit_model = None  # the repair stage's precision: fp32 (loaded once, for both games)
    for name, path in (("calibration", paths.calibration), ("validation", paths.validation)):
        if name not in names:  # the budgeted search judges on calibration alone, as SLEB
            continue
        windows = read_windows(path) if path.is_file() else np.zeros((0, 0), np.int64)
        if not len(windows):
            continue
        if params.select.repair == "none":
            games[name] = LayerGame(
                model, windows, utility=scoring.utility, batch_size=scoring.batch_size,
                prefix_reuse=scoring.prefix_reuse, cache_mib=scoring.cache_mib,
            )  # fmt: skip
            continue
        fit = read_repair_windows(paths.repair_windows, "select.repair: linear", "select.repair: none")[0]
        fit = fit[: params.repair.linear_windows]  # [n, T]
        if fit_model is None:
            fp32 = next(model.parameters()).dtype == torch.float32
            device = resolve_device(params.base.device)
            fit_model = model if fp32 else load_model(str(paths.model), dtype=torch.float32, device=device)[0]
        games[name] = RepairedLayerGame(
            model,
            fit,
            windows,
            utility=scoring.utility,
            ridge=params.repair.ridge,
            fit=params.repair.fit,
            loss=params.repair.loss,
            fit_model=fit_model,
            batch_size=scoring.batch_size,
            prefix_reuse=scoring.prefix_reuse,
            cache_mib=scoring.cache_mib,
        )
        if name == "validation":  # the maps depend on the run only: fit each once for both games
            games[name].fits, games[name].reports = games["calibration"].fits, games["calibration"].reports
    return games


def candidates_frame(selection: Selection) -> pd.DataFrame:
    """One row per candidate (``dropped`` as a space-separated string)."""
    df = pd.DataFrame(selection.records())
    df["dropped"] = df["dropped"].map(lambda d: " ".join(map(str, d)))
    return df


def write_selection(selection: Selection, paths: Paths, meta: dict) -> pd.DataFrame:
    """``data/select/select.json`` (the choice per k) and ``candidates.parquet``; returns the candidates table."""
    frame = candidates_frame(selection)
    write_table(frame, paths.select_candidates)
    chosen = selection.summary()
    tokens = int(meta.get("tokens_per_evaluation", 0))
    for k, row in chosen.items():  # layer-token forwards: the cost measure that is fair to masks keeping fewer layers
        if int(k) in selection.costs:
            row["layer_token_forwards"] = selection.costs[int(k)].layer_token_forwards(tokens)
    write_json(
        paths.select_json,
        {
            "method": "select",
            "n_layers": selection.n_layers,
            "n_drops": sorted(selection.chosen),
            "budget": selection.budget,
            "rounds": selection.rounds,
            "n_evaluations": selection.n_evaluations,
            "n_calibration_evaluations": selection.n_calibration_evaluations,
            "n_validation_evaluations": selection.n_validation_evaluations,
            "kept_layers": selection.kept_layers,
            **meta,
            "chosen": chosen,  # write_json writes NaN / inf as null
        },
    )
    return frame


def write_placeholder(paths: Paths, method: str) -> None:
    """Outputs of ``select`` when ``prune.method`` is another method: nothing searched, nothing spent."""
    write_table(pd.DataFrame({"n_drop": [], "bits": []}), paths.select_candidates)
    write_json(paths.select_json, {"method": method, "note": f"prune.method is {method}; select searched nothing"})
