"""Repair-aware choice on the default model: the budgeted ``select`` searching the *repaired* game.

Runs after ``prepare_model`` and ``prepare_data`` (data/model and the windows, nothing else). For each k of
``compare`` (3, 6, 9 of 30), ``budgeted_select`` with ``--fraction`` of SLEB's LLM evaluations at that k,
each counted from zero, on the repaired calibration game (``shapprune.repair.game.RepairedLayerGame``:
every mask's runs repaired with ``repair.fit``'s least-squares fit before it is scored on the calibration
windows; fp32). To keep the many fit passes affordable on a CPU the search's fits use the first
``--fit-windows`` repair windows; the chosen sets are then measured by ``bench.repair``, repaired with the
repair stage's own fit (every repair window), beside SLEB's sets and any other method's:

    python -m bench.select_repair --fraction 0.334 --fit-windows 64
    python -m bench.repair --methods sleb --sets bench/results/select_repair_sets.csv --repairs none,linear

writes ``bench/results/<out>_sets.csv`` (``compare.csv``'s columns) and ``<out>.json``. ``--methods sleb``
runs SLEB's greedy removal on the same repaired game instead (its full cost, rows ``sleb@<fit>``), so the
two searches can be told apart from the game they search.

``--repair-text`` fits the search's maps on another repair text (a ``prepare_data.repair_mix``, see
``bench.repair_text``), and ``--score-windows N`` scores every mask on the N windows of that text after the
fit's (windows the fits never saw) instead of the calibration windows: the game's objective is then that
text, not the calibration source alone. Such rows are named ``select@<fit>+<tag>``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.repair_text import CALIBRATION, repair_text
from shapprune.baselines.cost import sleb_cost
from shapprune.baselines.sleb import game_order
from shapprune.config import load_params
from shapprune.estimators.budget import known_values
from shapprune.models import load_model
from shapprune.repair.game import RepairedLayerGame
from shapprune.select import budgeted_select
from tasks.shared.artifacts import read_windows
from tasks.shared.paths import Paths

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1 / 3, help="budget per k, as a fraction of SLEB's")
    parser.add_argument("--fit-windows", type=int, default=64, help="repair windows behind the search's fits")
    parser.add_argument("--fit", default=None, help="map | refit (default: params.yaml's repair.fit)")
    parser.add_argument("--ks", default=None, help="comma-separated numbers of removed layers (default: compare's)")
    parser.add_argument("--methods", default="select", help="select and/or sleb (SLEB's greedy removal on this game)")
    parser.add_argument("--repair-text", default=CALIBRATION, help="calibration or a mix, source:share+source:share")
    parser.add_argument(
        "--score-windows",
        type=int,
        default=0,
        help="score on this many repair-text windows after the fit's (0: the calibration windows)",
    )
    parser.add_argument("--tag", default="mix", help="row-name suffix when --repair-text or --score-windows is set")
    parser.add_argument("--out", default="select_repair")
    args = parser.parse_args()
    params, paths = load_params(ROOT / "params.yaml"), Paths(ROOT)
    fit = args.fit or params.repair.fit
    model, _ = load_model(str(paths.model), dtype=torch.float32, device="cpu")
    text = repair_text(paths, params, args.repair_text)  # [n, T]
    fit_windows = text[: args.fit_windows]
    score = text[args.fit_windows : args.fit_windows + args.score_windows]  # never seen by a fit
    if args.score_windows and len(score) < args.score_windows:
        parser.error(f"--score-windows {args.score_windows}: the repair text has {len(text) - args.fit_windows} left")
    game = RepairedLayerGame(
        model, fit_windows, score if args.score_windows else read_windows(paths.calibration),
        utility=params.score_masks.utility, ridge=params.repair.ridge, fit=fit,
        batch_size=params.score_masks.batch_size,
    )  # fmt: skip
    if args.repair_text != CALIBRATION or args.score_windows:
        fit = f"{fit}+{args.tag}"  # the rows' name: select@<fit>+<tag>
    n_layers = game.n_players
    ks = sorted({round(r * n_layers) for r in params.compare.ratios})
    ks = [int(k) for k in args.ks.split(",")] if args.ks else ks
    methods = args.methods.split(",")
    if unknown := set(methods) - {"select", "sleb"}:
        parser.error(f"--methods: unknown {sorted(unknown)}; choose from select, sleb")
    rows, began = [], time.perf_counter()
    if "sleb" in methods:
        rows += sleb_rows(game, ks, fit, args.out)
    for k in ks if "select" in methods else []:
        budget = max(1, int(args.fraction * sleb_cost(n_layers, k)))
        start, calls = time.perf_counter(), game.calls
        sel = budgeted_select(game, [k], budget, np.random.default_rng(0), known=known_values(n_layers, full=1.0))
        note = sel.notes[k]
        rows.append(
            {"method": f"select@{fit}", "n_drop": k, "dropped": " ".join(map(str, sel.chosen[k].dropped))}
            | {"budget": budget, "llm_evaluations": sel.costs[k].evaluations, "calls": game.calls - calls}
            | {"calibration": sel.chosen[k].calibration, "seconds": round(time.perf_counter() - start, 1)}
            | {"flags": " ".join(n for n in ("reduced", "still_improving", "close", "local_optimum") if note.get(n))}
        )  # fmt: skip
        print(rows[-1], flush=True)
        OUT.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(OUT / f"{args.out}_sets.csv", index=False)
    if not rows:
        return
    summary = {
        "args": vars(args),
        "fit": fit,
        "runs_fitted": len(game.fits),
        "seconds": round(time.perf_counter() - began, 1),
        "rows": rows,
    }
    (OUT / f"{args.out}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def sleb_rows(game: RepairedLayerGame, ks: list[int], fit: str, out: str) -> list[dict]:
    """SLEB's greedy removal on the repaired game to ``max(ks)``: its nested set at each k, and what it cost."""
    start, calls = time.perf_counter(), game.calls
    order, values = game_order(game, max(ks))
    seconds = round(time.perf_counter() - start, 1)
    rows = [
        {"method": f"sleb@{fit}", "n_drop": k, "dropped": " ".join(map(str, sorted(order[:k])))}
        | {"budget": sleb_cost(game.n_players, k), "llm_evaluations": sleb_cost(game.n_players, k)}
        | {"calls": game.calls - calls if k == max(ks) else sleb_cost(game.n_players, k)}
        | {"calibration": values[k - 1], "seconds": seconds if k == max(ks) else None, "flags": ""}
        for k in ks
    ]  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(OUT / f"{out}_sets.csv", index=False)
    print(*rows, sep="\n", flush=True)
    return rows


if __name__ == "__main__":
    main()
