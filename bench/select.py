"""Benchmark of subset search (``shapprune.select``) on the exhaustively scored 10-player sub-game.

The sub-game (players = layers 15..24 of SmolLM2-135M, the other 20 layers always kept; 4 x 128-token
calibration windows, 8 x 128 held-out windows for the masks keeping 8, 6 or 4 players) is the table of
:mod:`bench.subgame_table`, cached in ``data/bench/``; an "LLM evaluation" is a counted table lookup.
For every ``k`` dropped and seed, the search starts from 128 masks sampled as the pipeline samples them
(the paper's strata scaled to 10 players) and may verify at most ``32 k`` more, so it sees at most
``128 + 32 k`` LLM values. The table has no separate validation windows: verification is on the
calibration windows only, and the choice is the verified mask with the best calibration utility.

    python -m bench.select            # writes bench/results/select.{md,csv}
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shapprune.sampling import PAPER_KEEP_FRACTIONS, split_counts, strata_from_fractions
from shapprune.select import SearchConfig, select_subsets, surrogate_fit
from shapprune.shapley import all_masks
from shapprune.table_game import TableGame

TABLE = Path("data/bench/subgame.parquet")
RESULTS = Path("bench/results")
DROPS = (1, 2, 3, 4)
SEEDS = 5
N_INITIAL = 128
PER_K = 32  # verification evaluations per layer dropped
# the pipeline's surrogate (params.yaml fit_surrogate): the paper's MLP trained with Adam
MLP = {"hidden_mult": 2.0, "depth": 1, "output": "sigmoid", "optimizer": "adam", "lr": 0.01, "epochs": 300}
MLP |= {"batch_size": 64, "step_size": 100, "gamma": 0.5}
CONFIG = {"per_k_candidates": 8, "beam_width": 32, "n_blocks": 4, "rounds": 3}  # params.yaml select defaults
DESIGNS = ("paper strata", "no target size")
# (initial design, verification evaluations per layer dropped): the target's budget, and a tighter one
VARIANTS = (("paper strata", PER_K), ("no target size", PER_K), ("no target size", 8))


def load_table(path: Path = TABLE) -> pd.DataFrame:
    """The cached table in row order, after checking that mask strings and rows agree (char i = bit i = player i)."""
    if not path.is_file():
        raise SystemExit(f"{path}: missing; build it with `python -m bench.subgame_table` (about 40 min on a CPU)")
    table = pd.read_parquet(path).sort_values("row").reset_index(drop=True)
    n = len(table["mask"].iloc[0])
    masks = np.array([[c == "1" for c in s] for s in table["mask"]], dtype=bool)
    if not (np.array_equal(masks, all_masks(n)) and (table["row"].to_numpy() == np.arange(2**n)).all()):
        raise SystemExit(f"{path}: mask strings do not match the row index (bit i = player i)")
    return table


def initial_masks(n: int, strata: list[int], total: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` distinct masks spread over ``strata`` (kept counts); a stratum with fewer masks gives all it has."""
    pools = {s: np.flatnonzero(all_masks(n).sum(axis=1) == s) for s in strata}
    want = dict(zip(strata, split_counts(total, len(strata))))
    while True:  # move what small strata cannot use to the others
        extra = sum(max(0, want[s] - len(pools[s])) for s in strata)
        open_ = [s for s in strata if want[s] < len(pools[s])]
        if not extra or not open_:
            break
        want = {s: min(want[s], len(pools[s])) for s in strata}
        for s, add in zip(open_, split_counts(extra, len(open_))):
            want[s] += add
    rows = np.concatenate([rng.choice(pools[s], min(want[s], len(pools[s])), replace=False) for s in strata])
    return all_masks(n)[np.sort(rows)]


def drop_row(dropped: list[int], n: int) -> int:
    """Table row of the mask that drops ``dropped``."""
    return int(sum(1 << i for i in range(n) if i not in dropped))


def ranking(values: np.ndarray, k: int) -> list[int]:
    """The ``k`` lowest values (ties by index)."""
    return sorted(int(i) for i in np.lexsort((np.arange(len(values)), values))[:k])


def sleb(game: TableGame, k: int) -> tuple[list[int], int]:
    """Greedy removal on the table (SLEB): the dropped players and the evaluations it spent."""
    keep, cost = np.ones(game.n_players, dtype=bool), 0
    for _ in range(k):
        cands = np.flatnonzero(keep)
        masks = np.repeat(keep[None], len(cands), axis=0)
        masks[np.arange(len(cands)), cands] = False
        values = game(masks)
        cost += len(cands)
        keep[cands[int(np.argmax(values))]] = False
    return [int(i) for i in np.flatnonzero(~keep)], cost


def gaps(table: pd.DataFrame, dropped: list[int], k: int) -> dict[str, float]:
    """Calibration and held-out PPL gaps to the calibration-best subset of the same size (held-out: k = 2, 4 only)."""
    n = len(table["mask"].iloc[0])
    same = table[table["n_kept"] == n - k]
    best = same.loc[same["utility"].idxmax()]
    row = table.iloc[drop_row(dropped, n)]
    held = row["heldout_ppl"] / best["heldout_ppl"] - 1 if math.isfinite(best["heldout_ppl"]) else math.nan
    return {"calib_gap": row["ppl"] / best["ppl"] - 1, "heldout_gap": held, "best": bool(row["row"] == best["row"])}


def run(seeds: int = SEEDS, surrogate: str = "mlp") -> pd.DataFrame:
    """One row per (design, k, seed, method)."""
    table = load_table()
    values = table["utility"].to_numpy()
    n = len(table["mask"].iloc[0])
    exact = TableGame(values).shapley()
    loo = values[-1] - values[[drop_row([i], n) for i in range(n)]]  # full minus each single drop
    options = MLP if surrogate == "mlp" else {}
    rows = []
    for k in DROPS:
        game = TableGame(values)
        sleb_set, sleb_cost = sleb(game, k)
        for label, dropped, cost in (
            ("exact Shapley ranking", ranking(exact, k), 2**n),
            ("leave-one-out ranking", ranking(-loo, k), n),
            ("SLEB (greedy on the table)", sleb_set, sleb_cost),
        ):
            rows.append({"design": "-", "k": k, "seed": -1, "method": label, "dropped": dropped, "evaluations": cost})
        for design, per_k in VARIANTS:
            strata = strata_from_fractions(n, PAPER_KEEP_FRACTIONS)
            if design == "no target size":
                strata = [s for s in range(n - 1, n // 2 - 1, -1) if s != n - k][: len(strata)]
            for seed in range(seeds):
                rng = np.random.default_rng([seed, k, DESIGNS.index(design)])
                init = initial_masks(n, strata, N_INITIAL, rng)
                game = TableGame(values)
                init_values = game(init)
                fit = surrogate_fit(surrogate, options)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    predict = fit(init, init_values, rng)
                    contributions = TableGame(predict(all_masks(n))).shapley()  # estimate_shapley's analogue
                    sel = select_subsets(
                        game,
                        [k],
                        contributions,
                        init,
                        init_values,
                        fit,
                        rng,
                        predict=predict,
                        config=SearchConfig(budget=per_k * k, **CONFIG),
                    )
                seconds = time.perf_counter() - start
                total = len(init) + sel.n_evaluations
                assert game.calls == total <= N_INITIAL + per_k * k, (game.calls, total)
                chosen = sel.chosen[k]
                base = {"design": design, "k": k, "seed": seed, "evaluations": total, "per_k": per_k}
                if per_k == PER_K:
                    rows.append(
                        base
                        | {
                            "method": "surrogate ranking (no search)",
                            "dropped": ranking(contributions, k),
                            "evaluations": len(init),
                        }
                    )
                rows.append(
                    base
                    | {
                        "method": f"select (search + at most {per_k} k verifications)",
                        "dropped": chosen.dropped,
                        "sources": ",".join(chosen.sources),
                        "round": chosen.round,
                        "seconds": seconds,
                    }
                )
    out = pd.DataFrame(rows)
    measured = pd.DataFrame([gaps(table, d, k) for d, k in zip(out["dropped"], out["k"])])
    return pd.concat([out, measured], axis=1)


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.1f} %"


def markdown(rows: pd.DataFrame, seconds: float, command: str, surrogate: str = "mlp") -> str:
    """Gap tables: mean over seeds (calibration / held-out), how often the best subset is found, evaluations."""
    lines = [
        "# Subset search on the exhaustive 10-player sub-game",
        "",
        "Players: layers 15..24 of SmolLM2-135M (the other 20 always kept); utility `PPL_full / PPL_masked` on "
        "4 x 128 calibration tokens; held-out PPL on 8 x 128 tokens of disjoint documents exists only for masks "
        "keeping 8, 6 or 4 players (k = 2, 4). Gap = PPL of the chosen subset / PPL of the best subset by "
        "calibration utility of the same size - 1 (0 % = the best subset). Select starts from 128 masks and "
        f"verifies at most {PER_K} k more on the table (verification on the **calibration** windows: the table "
        "has no validation split); its ranking proposal is the exact Shapley value of its round-0 surrogate. "
        f"Settings: {CONFIG}, surrogate `{surrogate}` (`mlp`: as in `params.yaml`). "
        f"Mean over {rows[rows.seed >= 0].seed.nunique()} seeds; `found` = share of runs that chose the "
        "calibration-best subset.",
        "",
        "Initial designs: `paper strata` = the pipeline's sampler (128 masks over the kept counts {9, 8, 7, 6}; "
        "a stratum with fewer masks than its share gives all it has, so the masks dropping 1 or 2 players are "
        "(nearly) all scored up front); `no target size` = the same budget over kept counts that exclude the "
        "target size (the search has to find the subset, not look it up).",
        "",
        "| method | design | k=1 calib | k=2 calib / held-out | k=3 calib | k=4 calib / held-out | found (k=1..4) "
        "| LLM evaluations (k=1..4) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups = rows.groupby(["method", "design"], sort=False)
    for (method, design), g in groups:
        by_k = g.groupby("k")
        cal, held = by_k["calib_gap"].mean(), by_k["heldout_gap"].mean()
        found = by_k["best"].mean()
        evals = by_k["evaluations"].max()
        cells = [
            _pct(cal[1]),
            f"{_pct(cal[2])} / {_pct(held[2])}",
            _pct(cal[3]),
            f"{_pct(cal[4])} / {_pct(held[4])}",
            " ".join(f"{found[k]:.0%}" for k in DROPS),
            " / ".join(str(int(evals[k])) for k in DROPS),
        ]
        lines.append(f"| {method} | {design} | " + " | ".join(cells) + " |")
    sel = rows[rows.method.str.startswith("select") & (rows.per_k == PER_K)]
    worst = sel.groupby(["design", "k"])["calib_gap"].max()
    met = bool((worst <= 1e-12).all())
    lines += [
        "",
        f"Target (0 % gap at every k, every seed, within 128 + 32k evaluations): **{'met' if met else 'not met'}**. "
        "Worst calibration gap of select over seeds: "
        + "; ".join(f"{d}, k={k}: {_pct(v)}" for (d, k), v in worst.items())
        + ".",
        "",
        "Where the chosen subset came from (sources of the chosen candidate, all runs): "
        + ", ".join(f"{s} {c}" for s, c in sel["sources"].str.split(",").explode().value_counts().items())
        + ".",
        "",
        f"Reproduce: `{command}` ({seconds:.0f} s on a 2-core CPU; the table is cached in `data/bench/`).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--surrogate", default="mlp", help="select.surrogate: mlp (default), ridge, gbr, ...")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small MLP fits: one thread is several times faster than two on a shared CPU
    command = "python -m bench.select" + (f" --seeds {args.seeds}" if args.seeds != SEEDS else "")
    command += f" --surrogate {args.surrogate}" if args.surrogate != "mlp" else ""
    start = time.perf_counter()
    rows = run(args.seeds, args.surrogate)
    seconds = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.surrogate == "mlp" else f"_{args.surrogate}"
    rows.assign(dropped=rows["dropped"].map(lambda d: " ".join(map(str, d)))).to_csv(
        RESULTS / f"select{suffix}.csv", index=False
    )
    text = markdown(rows, seconds, command, args.surrogate)
    (RESULTS / f"select{suffix}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
