"""Per-layer contribution tables (CSV + JSON, the format of ``data/shapley``) and the prune stage's choice from them."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.baselines import LayerScores, layer_scores
from shapprune.streams import stream
from shapprune.surgery import num_layers
from shapprune.types import TokenWindows
from tasks.shared.contracts import write_json
from tasks.shared.runtime import Stage


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


@task(name="score-layers", cache_policy=NO_CACHE)
def score(stage: Stage, method: str, model: object, windows: TokenWindows) -> tuple[LayerScores, float]:
    """Run the criterion ``method`` on the calibration ``windows`` with ``score_layers``' options; returns
    (result, seconds)."""
    cfg = stage.params.score_layers
    start = time.perf_counter()
    result = layer_scores(
        method,
        model,
        windows,
        n_drops=cfg.n_drops(num_layers(model)),
        rng=stream(stage.params.base.seed, "baseline"),
        **cfg.criterion_options(),
    )
    return result, time.perf_counter() - start
