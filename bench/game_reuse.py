"""Prefix reuse in the games ``select`` plays, plain and repaired: wall time side by side in one run.

Runs after ``prepare_model`` and ``prepare_data``. Both games score the 10 x 128 calibration windows (fp32);
the repaired one (``select.repair: linear``) first refits each mask's runs with ``repair.fit`` on the first
``--fit-windows`` repair windows (one set of fits, made up front and timed apart). The masks are those a
budgeted search meets first, SLEB's first step (every single layer dropped) and every contiguous block of
each k, passed ``--chunk`` at a time as the search does (its batches are 4 wide). Each game is played:

- ``whole``: every mask scored from the embeddings up;
- ``per call`` (plain game only; the behaviour before the full model's states were pinned): the masks of a
  call share their prefixes (``score_with_prefix_reuse``), nothing is kept between calls;
- ``reuse``: the game's ``prefix_reuse`` (a persistent :class:`shapprune.prefix.PrefixScorer` with the full
  model's states pinned): each mask starts from the full model's states or an earlier mask's.

Groups alternate the order of the variants. The values must agree bit for bit.

    python -m bench.game_reuse        # bench/results/game_reuse.{md,json}
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from shapprune.config import load_params
from shapprune.game import LayerGame
from shapprune.models import load_model
from shapprune.prefix import score_with_prefix_reuse
from shapprune.repair.game import RepairedLayerGame
from shapprune.repair.seams import dropped_runs
from shapprune.scoring import utility_from_nll
from shapprune.select.blocks import contiguous_blocks
from tasks.shared.artifacts import read_windows
from tasks.shared.paths import Paths

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"


def groups(n_layers: int, ks: list[int]) -> dict[str, np.ndarray]:
    """SLEB's first step and the contiguous blocks of each k, as bool[n, L] masks."""
    single = ~np.eye(n_layers, dtype=bool)  # [L, L]
    return {"one layer dropped": single} | {f"blocks of {k}": contiguous_blocks(n_layers, k) for k in ks}


def per_call(game: LayerGame) -> Callable[[np.ndarray], np.ndarray]:
    """The plain game as it was: prefix reuse within a call only."""

    def value(masks: np.ndarray) -> np.ndarray:
        nlls, _ = score_with_prefix_reuse(game.model, game.windows, masks, game.batch_size, game.cache_mib)
        return np.array([utility_from_nll(n, game.full, game.utility) for n in nlls])

    return value


def timed(value: Callable[[np.ndarray], np.ndarray], masks: np.ndarray, chunk: int) -> tuple[float, list[float]]:
    began = time.perf_counter()
    values = np.concatenate([value(masks[i : i + chunk]) for i in range(0, len(masks), chunk)])
    return time.perf_counter() - began, values.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-windows", type=int, default=64, help="repair windows behind the fits")
    parser.add_argument("--ks", default="3,6,9", help="comma-separated block sizes")
    parser.add_argument("--chunk", type=int, default=4, help="masks per game call")
    parser.add_argument("--out", default="game_reuse")
    args = parser.parse_args()
    params, paths = load_params(ROOT / "params.yaml"), Paths(ROOT)
    model, _ = load_model(str(paths.model), dtype=torch.float32, device="cpu")
    score = read_windows(paths.calibration)  # [10, 128]
    scoring = dict(utility=params.score_masks.utility, batch_size=params.score_masks.batch_size)
    scoring |= dict(cache_mib=params.score_masks.cache_mib)
    fit_windows = read_windows(paths.repair_windows)[: args.fit_windows]  # [n, T]
    options = scoring | dict(ridge=params.repair.ridge, fit=params.repair.fit)
    plain = LayerGame(model, score, **scoring)
    plain_reuse = LayerGame(model, score, prefix_reuse=True, **scoring)
    repaired = RepairedLayerGame(model, fit_windows, score, **options)
    began = time.perf_counter()
    repaired_reuse = RepairedLayerGame(model, fit_windows, score, prefix_reuse=True, **options)
    build_seconds = time.perf_counter() - began  # one forward: the full NLL, its states pinned
    repaired_reuse.fits, repaired_reuse.reports = repaired.fits, repaired.reports
    masks = groups(plain.n_players, [int(k) for k in args.ks.split(",")])
    began = time.perf_counter()
    repaired._fit({r for group in masks.values() for m in group for r in dropped_runs(m)})  # one pass, every run
    fit_seconds = time.perf_counter() - began
    variants = {
        ("plain", "whole"): plain,
        ("plain", "per call"): per_call(plain),
        ("plain", "reuse"): plain_reuse,
        ("repaired", "whole"): repaired,
        ("repaired", "reuse"): repaired_reuse,
    }
    rows = []
    for i, (name, group) in enumerate(masks.items()):
        got = {}
        for key in list(variants)[:: 1 if i % 2 == 0 else -1]:
            got[key] = timed(variants[key], group, args.chunk)
        for game in ("plain", "repaired"):
            mine = {v: got[(g, v)] for g, v in got if g == game}
            values = [r[1] for r in mine.values()]
            rows.append(
                {"game": game, "masks": name, "n": len(group)}
                | {f"{v}_s": round(r[0], 1) for v, r in mine.items()}
                | {"bit_identical": all(v == values[0] for v in values)}
            )  # fmt: skip
            print(rows[-1], flush=True)
    totals = {}
    for game in ("plain", "repaired"):
        mine = [r for r in rows if r["game"] == game]
        totals[game] = {key: round(sum(r[key] for r in mine), 1) for key in mine[0] if key.endswith("_s")}
    stats = {g.__class__.__name__: g.scorer.stats for g in (plain_reuse, repaired_reuse)}
    summary = {
        "args": vars(args),
        "fit": params.repair.fit,
        "threads": torch.get_num_threads(),
        "runs_fitted": len(repaired.fits),
        "fit_pass_seconds": round(fit_seconds, 1),
        "build_seconds": round(build_seconds, 1),
        "rows": rows,
        "totals": totals,
        "layers_run_fraction": {k: round(s.run_layers / s.full_layers, 3) for k, s in stats.items()},
        "bit_identical": all(r["bit_identical"] for r in rows),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.out}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (OUT / f"{args.out}.md").write_text(report(summary))
    print(report(summary))


def report(summary: dict) -> str:
    args = summary["args"]

    def cell(row: dict, key: str) -> str:
        return f"{row[key]}" if key in row else "–"

    def ratio(row: dict) -> str:
        return f"{row['reuse_s'] / row['whole_s']:.2f}"

    rows = list(summary["rows"])
    rows += [{"game": g, "masks": "**all**", "n": "", **t, "bit_identical": ""} for g, t in summary["totals"].items()]
    lines = [
        "# Prefix reuse in the games select plays, side by side",
        "",
        f"`python -m bench.game_reuse` (fit windows {args['fit_windows']}, blocks of {args['ks']}, "
        f"{args['chunk']} masks per call); fit `{summary['fit']}`, fp32, {summary['threads']} CPU threads. Wall "
        "seconds in one run, groups alternating the order of the variants.",
        "",
        "| game | masks | n | whole (s) | per call (s) | reuse (s) | reuse / whole | values bit-identical |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['game']} | {r['masks']} | {r['n']} | {r['whole_s']} | {cell(r, 'per call_s')} | {r['reuse_s']} | "
            f"{ratio(r)} | {r['bit_identical']} |"
            for r in sorted(rows, key=lambda r: r["game"])
        ),
        "",
        "- Layers run with `reuse`, as a share of the kept layers of these masks: "
        + ", ".join(f"{k} {v:.1%}" for k, v in summary["layers_run_fraction"].items())
        + ".",
        f"- The repaired game's fits of all {summary['runs_fitted']} runs in one pass over {args['fit_windows']} "
        f"windows: {summary['fit_pass_seconds']} s (not in the table); building a repaired game with reuse (one "
        f"forward of the calibration windows, for the full NLL, that pins the full model's states): "
        f"{summary['build_seconds']} s, as the plain game's.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
