"""Per-layer contribution tables (CSV + JSON, the format of ``data/shapley``) and the prune stage's choice from them."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from shapprune.baselines import LayerScores
from shapprune.config import ConfigError
from shapprune.prune import PruningChoice, drop_lowest
from tasks.paths import Paths
from tasks.runtime import read_json, write_json
from tasks.select import choose_from_selection


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def score_table(result: LayerScores) -> pd.DataFrame:
    """``layer, <method>, <method>_se, rank`` (standard error 0: a deterministic criterion; rank 1 = removed first)."""
    table = pd.DataFrame({"layer": np.arange(result.n_layers)})
    table[result.method] = result.scores
    table[f"{result.method}_se"] = 0.0
    table["rank"] = np.argsort(result.ranking()) + 1
    return table


def write_layer_table(result: LayerScores, csv_path: Path, json_path: Path, **meta: object) -> pd.DataFrame:
    """Write a criterion's table as CSV and JSON (non-finite scores become ``null`` in JSON, ``inf`` in CSV)."""
    table = score_table(result)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv_path, index=False)
    records = [
        {k: (_json_float(v) if isinstance(v, float) else v) for k, v in row.items()}
        for row in table.to_dict(orient="records")
    ]
    write_json(
        json_path,
        {
            "method": result.method,
            **meta,
            "set_valued": result.set_valued,
            "ranking_low_to_high": [int(i) for i in result.ranking()],
            "chosen": {str(k): v for k, v in sorted(result.chosen.items())},
            "info": result.info,
            "layers": records,
        },
    )
    return table


def write_placeholder(csv_path: Path, json_path: Path, method: str = "shapley") -> None:
    """Outputs of ``score_layers`` when ``prune.method`` is shapley or select: no baseline table is needed."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"layer": [], "rank": []}).to_csv(csv_path, index=False)
    where = "data/shapley" if method == "shapley" else "data/select"
    write_json(json_path, {"method": method, "note": f"prune.method is {method}; its choice is in {where}"})


def choose_from_tables(paths: Paths, method: str, n_drop_of: Callable[[int], int]) -> tuple[str, int, PruningChoice]:
    """The layers ``prune`` drops: select's choice, the Shapley table (boundary check) or a baseline's recorded set.

    ``n_drop_of(n_layers)`` resolves ``prune.n_drop`` / ``prune.ratio``. Returns (table method, L, choice);
    a baseline's choice has ``boundary_z`` nan (no standard errors).
    """
    if method == "select":
        return choose_from_selection(paths, n_drop_of)
    if method == "shapley":
        table = read_json(paths.shapley_json)
        values = np.array([row["shapley"] for row in table["layers"]])
        stderr = np.array([row["shapley_se"] for row in table["layers"]])
        return table["estimator"], len(values), drop_lowest(values, stderr, n_drop_of(len(values)))
    table = read_json(paths.layer_scores_json)
    if table.get("method") != method:
        raise ConfigError(
            f"{paths.layer_scores_json}: holds '{table.get('method')}' scores but prune.method is '{method}'; "
            "rerun `dvc repro score_layers`"
        )
    n_layers = len(table["layers"])
    k = n_drop_of(n_layers)
    if str(k) not in table["chosen"]:
        raise ConfigError(
            f"prune: {method} recorded layer sets for k in {sorted(map(int, table['chosen']))} but prune asks for "
            f"{k}; raise score_layers.max_drop_ratio (or oracle_max_subsets for oracle) and rerun score_layers"
        )
    dropped = sorted(int(i) for i in table["chosen"][str(k)])
    kept = [i for i in range(n_layers) if i not in dropped]
    return method, n_layers, PruningChoice(dropped, kept, math.nan)
