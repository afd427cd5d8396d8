"""Prefect tasks of the ``select`` stage: inputs from the earlier stages, the search on the LLM, its artifacts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.config import ConfigError
from shapprune.estimators.budget import known_values
from shapprune.estimators.regressors import Predictor
from shapprune.game import LayerGame
from shapprune.prune import PruningChoice
from shapprune.scoring import utility_from_nll
from shapprune.select import SearchConfig, Selection, select_subsets, surrogate_fit
from shapprune.types import Mask, Utility
from tasks.artifacts import load_surrogate, read_masks, read_windows, write_table
from tasks.model import load_stage_model
from tasks.paths import Paths
from tasks.runtime import Stage, read_json, write_json


@dataclass
class SearchInputs:
    """What the search starts from: masks already scored on the LLM, the contributions and the surrogate."""

    masks: Mask  # bool[n, L], finite utilities only
    utilities: Utility
    contributions: np.ndarray  # float[L] (data/shapley, column "shapley")
    surrogate: Predictor


def _clean(obj: object) -> object:
    """NaN / inf -> None, recursively (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


@task(name="load-search-inputs", cache_policy=NO_CACHE)
def load_inputs(stage: Stage, n_layers: int) -> SearchInputs:
    """Scored masks (``data/scores.parquet``), contributions (``data/shapley``), the surrogate (``data/surrogate``)."""
    paths = stage.paths
    scores, masks = read_masks(paths.scores, n_layers)
    utilities = scores["utility"].to_numpy(float)
    finite = np.isfinite(utilities)
    table = read_json(paths.shapley_json)
    contributions = np.array([row["shapley"] for row in table["layers"]], dtype=np.float64)
    if len(contributions) != n_layers:
        raise ConfigError(
            f"{paths.shapley_json}: {len(contributions)} layers but the model has {n_layers}; "
            "rerun `dvc repro estimate_shapley`"
        )
    surrogate = load_surrogate(paths.surrogate, stage.params.base.model)
    return SearchInputs(masks[finite], utilities[finite], contributions, surrogate.predict)


@task(name="search-subsets", cache_policy=NO_CACHE)
def search(stage: Stage, inputs: SearchInputs, n_drops: list[int]) -> tuple[Selection, dict]:
    """Build the calibration and validation games on the LLM and run the subset search; returns (result, info)."""
    params, paths, cfg = stage.params, stage.paths, stage.params.select
    model, _, device = load_stage_model(paths.model, params)
    scoring = params.score_masks
    games = {}
    for name, path in (("calibration", paths.calibration), ("validation", paths.validation)):
        windows = read_windows(path) if path.is_file() else np.zeros((0, 0), np.int64)
        if len(windows):
            games[name] = LayerGame(
                model,
                windows,
                utility=scoring.utility,
                batch_size=scoring.batch_size,
                prefix_reuse=True,
                cache_mib=scoring.cache_mib,
            )
    if "calibration" not in games:
        raise ConfigError(f"{paths.calibration}: no calibration windows; rerun `dvc repro prepare_data`")
    calibration, validation = games["calibration"], games.get("validation")
    full = utility_from_nll(calibration.full, calibration.full, scoring.utility)
    options = params.fit_surrogate.model_dump() if cfg.surrogate == "mlp" else {}
    selection = select_subsets(
        calibration,
        n_drops,
        inputs.contributions,
        inputs.masks,
        inputs.utilities,
        surrogate_fit(cfg.surrogate, options),
        np.random.default_rng([params.base.seed, 8]),
        validation=validation,
        predict=inputs.surrogate if cfg.surrogate == "mlp" else None,
        config=SearchConfig(cfg.budget, cfg.per_k_candidates, cfg.beam_width, cfg.n_blocks, cfg.rounds),
        known=known_values(calibration.n_players, full=full),
    )
    info = {
        "device": device,
        "calibration_full_ppl": calibration.full.perplexity,
        "validation_full_ppl": None if validation is None else validation.full.perplexity,
        "validation_windows": 0 if validation is None else len(validation.windows),
    }
    return selection, info


def candidates_frame(selection: Selection) -> pd.DataFrame:
    """One row per candidate (``dropped`` as a space-separated string)."""
    df = pd.DataFrame(selection.records())
    df["dropped"] = df["dropped"].map(lambda d: " ".join(map(str, d)))
    return df


def write_selection(selection: Selection, paths: Paths, meta: dict) -> pd.DataFrame:
    """``data/select/select.json`` (the choice per k) and ``candidates.parquet``; returns the candidates table."""
    frame = candidates_frame(selection)
    write_table(frame, paths.select_candidates)
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
            **{key: _clean(value) for key, value in meta.items()},
            "chosen": _clean(selection.summary()),
        },
    )
    return frame


def write_placeholder(paths: Paths, method: str) -> None:
    """Outputs of ``select`` when ``prune.method`` is another method: nothing searched, nothing spent."""
    write_table(pd.DataFrame({"n_drop": [], "bits": []}), paths.select_candidates)
    write_json(paths.select_json, {"method": method, "note": f"prune.method is {method}; select searched nothing"})


def choose_from_selection(paths: Paths, n_drop_of: Callable[[int], int]) -> tuple[str, int, PruningChoice]:
    """The layers ``prune`` drops with ``prune.method: select``: the set ``select`` chose for prune's k."""
    table = read_json(paths.select_json)
    if table.get("method") != "select":
        raise ConfigError(
            f"{paths.select_json}: written while prune.method was '{table.get('method')}'; rerun `dvc repro select`"
        )
    n_layers = int(table["n_layers"])
    k = n_drop_of(n_layers)
    if str(k) not in table["chosen"]:
        raise ConfigError(
            f"prune: select searched k in {table['n_drops']} but prune asks for {k}; "
            "set select.n_drops to null (prune's k) or include it, and rerun `dvc repro select`"
        )
    dropped = sorted(int(i) for i in table["chosen"][str(k)]["dropped"])
    kept = [i for i in range(n_layers) if i not in dropped]
    return "select", n_layers, PruningChoice(dropped, kept, math.nan)


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def report_section(table: dict, sleb: dict | None = None) -> tuple[str, dict[str, float]]:
    """Markdown for the report and flat metrics: per k the chosen layers, predicted vs measured utility, and the
    ranking's (and SLEB's, when ``data/layer_scores`` holds its table) choice next to it."""
    if table.get("method") != "select":
        return "", {}
    full_ppl = table.get("calibration_full_ppl")
    lines = [
        "## Subset search (select)",
        "",
        f"{table['n_evaluations']} LLM evaluations of a budget of {table['budget']} ({table['rounds']} rounds; "
        f"{table['n_calibration_evaluations']} calibration, {table['n_validation_evaluations']} validation). "
        "Utilities: calibration / validation `PPL_full / PPL_masked` (higher is better); predicted: the "
        "surrogate's prediction before the mask was measured.",
        "",
        "| k | choice | dropped layers | from | predicted | calibration | validation |",
        "|---|---|---|---|---|---|---|",
    ]
    metrics: dict[str, float] = {"select_n_evaluations": float(table["n_evaluations"])}
    for k, row in table["chosen"].items():
        lines.append(
            f"| {k} | searched | {row['dropped']} | {'+'.join(row['sources'])} (round {row['round']}) | "
            f"{_fmt(row['predicted'])} | {_fmt(row['calibration'])} | {_fmt(row['validation'])} |"
        )
        measured = ("predicted", "calibration", "validation")
        metrics |= {f"select_k{k}_{m}": row[m] for m in measured if row[m] is not None}
        rank = row.get("ranking")
        if rank is not None:
            same = sorted(rank["dropped"]) == sorted(row["dropped"])
            lines.append(
                f"| {k} | ranking (drop lowest) | {rank['dropped']} | {'same set' if same else 'contributions'} | – | "
                f"{_fmt(rank['calibration'])} | {_fmt(rank['validation'])} |"
            )
            metrics |= {f"ranking_k{k}_{m}": rank[m] for m in ("calibration", "validation") if rank[m] is not None}
        if sleb is not None and sleb.get("method") == "sleb" and k in sleb.get("chosen", {}):
            ppl = sleb.get("info", {}).get("ppl_after_step", [])
            util = full_ppl / ppl[int(k) - 1] if full_ppl and len(ppl) >= int(k) else None
            lines.append(f"| {k} | SLEB | {sleb['chosen'][k]} | data/layer_scores | – | {_fmt(util)} | – |")
    return "\n".join(lines) + "\n", metrics
