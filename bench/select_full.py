"""Subset search vs ranking vs SLEB on the full 30-layer default model, at 3, 6 and 9 dropped layers.

Runs after the pipeline (`make repro`): it reuses the pipeline's scored masks, surrogate and contribution
table, runs the ``select`` search for k = 3, 6, 9 (``select.budget`` verification evaluations per k), and
measures the held-out perplexity (the evaluate stage's 3 x 64 windows) of the sets chosen by select, by
dropping the k lowest contributions (the ranking) and by SLEB (greedy removal on the LLM, computed here,
with the LLM evaluations it needs for each k). The pipeline's ``compare`` stage reports the same sets among
all methods.

    python -m bench.select_full          # writes bench/results/select_full.{md,csv}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shapprune.baselines.sleb import greedy_order
from shapprune.prune import drop_lowest
from shapprune.scoring import window_nll
from shapprune.surgery import kept_layers
from tasks.select import load_inputs, search
from tasks.shared.artifacts import read_windows
from tasks.shared.contracts import ScoringSummary, ShapleyTable
from tasks.shared.model import load_stage_model
from tasks.shared.runtime import Stage

RESULTS = Path("bench/results")
DROPS = (3, 6, 9)


def heldout_ppl(model, stage: Stage, dropped: list[int], n_layers: int, batch: int) -> dict[str, float]:
    """Perplexity on every held-out corpus with ``dropped`` layers skipped."""
    keep = np.ones(n_layers, dtype=bool)
    keep[dropped] = False
    out = {}
    with kept_layers(model, keep):
        for role in stage.params.prepare_data.eval_corpora:
            out[role] = window_nll(model, read_windows(stage.paths.eval_windows(role)), batch).perplexity
    return out


def sleb_sets(model, stage: Stage, batch: int) -> tuple[dict[int, list[int]], dict[int, int]]:
    """SLEB's sets for k = 3, 6, 9 (greedy, nested) and the LLM evaluations each costs."""
    order, _, _ = greedy_order(model, read_windows(stage.paths.calibration), max(DROPS), batch)
    n = model.config.num_hidden_layers
    return {k: sorted(order[:k]) for k in DROPS}, {k: sum(n - j for j in range(k)) for k in DROPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    stage = Stage.open("select", ".")
    params = stage.params
    params.select.n_drops = list(DROPS)
    model, _, _ = load_stage_model(stage.paths.model, params)
    n_layers = model.config.num_hidden_layers
    inputs = load_inputs.fn(stage, n_layers)
    start = time.perf_counter()
    selection, _ = search.fn(stage, inputs, list(DROPS))
    select_s = time.perf_counter() - start
    shapley = ShapleyTable.read(stage.paths.shapley_json)
    values, stderr = shapley.values, shapley.stderr
    n_scored = ScoringSummary.read(stage.paths.metrics_file("score_masks")).n_masks
    start = time.perf_counter()
    sleb, sleb_cost = sleb_sets(model, stage, args.batch)
    sleb_s = time.perf_counter() - start
    rows = []
    for k in DROPS:
        chosen = selection.chosen[k]
        sets = {
            "ranking (drop k lowest)": (drop_lowest(values, stderr, k).dropped, n_scored),
            "select": (chosen.dropped, n_scored + selection.n_evaluations),
            "SLEB": (sleb[k], sleb_cost[k]),
        }
        for method, (dropped, evals) in sets.items():
            ppl = heldout_ppl(model, stage, dropped, n_layers, args.batch)
            rows.append({"k": k, "method": method, "dropped": " ".join(map(str, dropped)), "llm_evaluations": evals,
                         **{f"ppl_{r}": v for r, v in ppl.items()}})  # fmt: skip
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / "select_full.csv", index=False)
    corpora = list(params.prepare_data.eval_corpora)
    md = [
        "# Subset search on the full default model (SmolLM2-135M, 30 layers)",
        "",
        f"`python -m bench.select_full` after `make repro`: {n_scored} masks scored by the pipeline's "
        f"`{shapley['estimator']}` design; select verifies on calibration + validation windows "
        f"({selection.n_evaluations} LLM evaluations for k = 3, 6, 9 together, {select_s:.0f} s); SLEB runs greedy "
        f"removal on the calibration windows ({sleb_s:.0f} s). Held-out perplexity on the evaluate stage's windows "
        "(64 x 128 tokens per corpus). LLM evaluations: select counts the scored design plus all verification "
        "(shared by the three k); SLEB counts its own greedy steps.",
        "",
        "| k | method | dropped layers | LLM evaluations | " + " | ".join(f"PPL {c}" for c in corpora) + " |",
        "|---|---|---|---|" + "---|" * len(corpora),
    ]
    for k in DROPS:
        sub = df[df["k"] == k]
        best = {c: sub[f"ppl_{c}"].min() for c in corpora}
        for r in sub.itertuples():
            cells = [
                f"**{getattr(r, f'ppl_{c}'):.2f}**"
                if getattr(r, f"ppl_{c}") == best[c]
                else f"{getattr(r, f'ppl_{c}'):.2f}"
                for c in corpora
            ]
            md.append(f"| {k} | {r.method} | {r.dropped} | {r.llm_evaluations} | " + " | ".join(cells) + " |")
    (RESULTS / "select_full.md").write_text("\n".join(md) + "\n")
    (RESULTS / "select_full.json").write_text(json.dumps({"select_s": select_s, "sleb_s": sleb_s}, indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
