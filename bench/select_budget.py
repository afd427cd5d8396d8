"""Budgeted select against SLEB at 1/4, 1/3, 1/2 and 1x SLEB's LLM evaluations, for k = compare.ratios x L.

Runs after `prepare_model` and `prepare_data` (it needs data/model and the windows, nothing else: the
budgeted search reuses no scored masks here). Both methods play the same calibration game (the
pipeline's 10 x 128-token calibration windows, utility PPL_full / PPL, fp32: bf16 is slower on CPUs
without avx512_bf16 and the choice is compared, not the dtype). SLEB is greedy removal on that game; each
budgeted run counts its own evaluations from zero (a cache underneath only saves wall time: it never
makes a run cheaper in the count). Cost is reported as LLM evaluations and as layer-token forwards
(kept layers x tokens). Held-out perplexity on the evaluate stage's windows (3 corpora x 64 x 128).

    python -m bench.select_budget        # bench/results/select_budget.{md,csv,png}: k = 3, 6, 9 of 30
    python -m bench.select_budget --project ../gemma --tag gemma   # another project copy's model and windows
    python -m bench.select_budget --tag gemma --project ../gemma --min-blocks 0   # a non-default BudgetPlan:
    #   results in select_budget_gemma_min_blocks0.*, the same value caches
    python -m bench.select_budget --screen-windows 1   # screen on 1 calibration window, verify on all 10
    #   (select.screen_windows): results in select_budget_screen1.*, screen values in their own cache

A screening evaluation costs its share of the calibration tokens (1 window of 10: 0.1 of an evaluation); the
budget counts full evaluations plus screening ones at that cost, and the table shows both.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shapprune.baselines.cost import layer_passes, sleb_cost
from shapprune.config import load_params
from shapprune.estimators.budget import known_values, mask_key
from shapprune.game import LayerGame
from shapprune.models import load_model
from shapprune.scoring import window_nll
from shapprune.select import BudgetPlan, Screen, budgeted_select
from shapprune.surgery import kept_layers
from tasks.shared.artifacts import read_windows
from tasks.shared.runtime import Stage

RESULTS = Path("bench/results")
CACHES = Path("data/bench")  # select_budget[_<tag>]_values.parquet: mask -> calibration utility (fp32), and
# select_budget[_<tag>]_heldout.json: dropped layers -> held-out PPL per corpus (fp32)
FRACTIONS = (1 / 4, 1 / 3, 1 / 2, 1.0)


class Memo:
    """A game with a value cache kept in ``path`` (saves wall time across runs and reruns; the counting is the
    budgeted search's own, from zero in every run)."""

    def __init__(self, game: LayerGame, path: Path) -> None:
        self.game, self.n_players, self.path, self.values = game, game.n_players, path, {}
        if path.is_file():
            self.values = {bytes.fromhex(k): v for k, v in pd.read_parquet(path).itertuples(index=False)}

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)
        new = [m for m in {mask_key(m): m for m in masks}.values() if mask_key(m) not in self.values]
        if new:
            for m, v in zip(new, self.game(np.stack(new))):
                self.values[mask_key(m)] = float(v)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"key": [k.hex() for k in self.values], "value": list(self.values.values())}).to_parquet(
                self.path, index=False
            )
        return np.array([self.values[mask_key(m)] for m in masks])


def sleb(game: Memo, k_max: int) -> list[int]:
    """Greedy removal (SLEB) on ``game``: the removal order, earliest layer on ties."""
    keep, order = np.ones(game.n_players, dtype=bool), []
    for _ in range(k_max):
        cands = np.flatnonzero(keep)
        masks = np.repeat(keep[None], len(cands), axis=0)
        masks[np.arange(len(cands)), cands] = False
        best = int(cands[int(np.argmax(game(masks)))])
        order.append(best)
        keep[best] = False
        print(f"SLEB step {len(order)}: drop {best}", flush=True)
    return order


def heldout(model, stage: Stage, corpora: list[str], dropped: list[int], n_layers: int, batch: int) -> dict:
    keep = np.ones(n_layers, dtype=bool)
    keep[dropped] = False
    with kept_layers(model, keep):
        return {
            role: window_nll(model, read_windows(stage.paths.eval_windows(role)), batch).perplexity for role in corpora
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--project", default=".", help="the project copy whose data/model and windows are used")
    parser.add_argument("--tag", default="", help="suffix of the result and cache files (e.g. gemma)")
    parser.add_argument("--min-blocks", type=int, default=None, help="BudgetPlan.min_blocks (default: the plan's)")
    parser.add_argument("--min-width", type=int, default=None, help="BudgetPlan.min_width (default: the plan's)")
    parser.add_argument("--screen-windows", type=int, default=0, help="screen on this many calibration windows")
    args = parser.parse_args()
    name = "select_budget" + (f"_{args.tag}" if args.tag else "")  # the value caches' name
    changes = {f: v for f, v in (("min_blocks", args.min_blocks), ("min_width", args.min_width)) if v is not None}
    plan = BudgetPlan(**changes)
    out = name + "".join(f"_{f}{v}" for f, v in changes.items())  # the results' name
    out += f"_screen{args.screen_windows}" if args.screen_windows else ""
    stage = Stage.open("select", args.project)
    params = load_params(Path(args.project) / "params.yaml")
    model, _ = load_model(str(stage.paths.model), dtype=torch.float32, device="cpu")
    windows = read_windows(stage.paths.calibration)  # [n, T]
    memo = CACHES / f"{name}_values.parquet"
    game = Memo(LayerGame(model, windows, utility="ppl_ratio", batch_size=args.batch, prefix_reuse=True), memo)
    screen = None
    if args.screen_windows:
        if not 0 < args.screen_windows < len(windows):
            parser.error(f"--screen-windows: use 1 to {len(windows) - 1} of the {len(windows)} calibration windows")
        scr = LayerGame(model, windows[: args.screen_windows], "ppl_ratio", args.batch, prefix_reuse=True)
        screen = Screen(
            Memo(scr, CACHES / f"{name}_screen{args.screen_windows}_values.parquet"),
            args.screen_windows / len(windows),
        )
    corpora = list(params.prepare_data.eval_corpora)
    n_layers, tokens = game.n_players, int(np.prod(windows.shape))
    drops = sorted({max(1, round(r * n_layers)) for r in params.compare.ratios})  # 3, 6, 9 of 30
    full_ppl = game.game.full.perplexity
    order = sleb(game, max(drops))
    rows = []
    held = CACHES / f"{name}_heldout.json"  # the caches are shared by every plan
    ppl_cache = json.loads(held.read_text()) if held.is_file() else {}  # "3 4 5" -> {corpus: ppl}

    def record(
        k: int,
        method: str,
        fraction: float,
        dropped: list[int],
        evals: int,
        forwards: int,
        note: str,
        screened: int = 0,
    ) -> None:
        mask = np.ones(n_layers, dtype=bool)
        mask[dropped] = False
        key = " ".join(map(str, dropped))
        if key not in ppl_cache:
            ppl_cache[key] = heldout(model, stage, corpora, dropped, n_layers, args.batch)
            held.write_text(json.dumps(ppl_cache, indent=1) + "\n")
        rows.append(
            {"k": k, "method": method, "fraction": fraction, "budget": evals if method == "SLEB" else None,
             "llm_evaluations": evals, "screen_evaluations": screened,
             "equivalent_evaluations": evals + (screen.cost * screened if screen else 0.0),
             "layer_token_forwards": forwards, "dropped": " ".join(map(str, dropped)),
             "calibration_ppl": full_ppl / game(mask[None])[0], **{f"ppl_{r}": v for r, v in ppl_cache[key].items()},
             "note": note}
        )  # fmt: skip
        print(rows[-1], flush=True)
        pd.DataFrame(rows).to_csv(RESULTS / f"{out}.csv", index=False)

    RESULTS.mkdir(parents=True, exist_ok=True)
    for k in drops:
        cost = sleb_cost(n_layers, k)
        sleb_kept = layer_passes("sleb", n_layers, k)
        record(k, "SLEB", 1.0, sorted(order[:k]), cost, sleb_kept * tokens, "")
        for fraction in FRACTIONS:
            budget = int(fraction * cost)
            known = known_values(n_layers, full=1.0)
            sel = budgeted_select(game, [k], budget, np.random.default_rng(0), known=known, plan=plan, screen=screen)
            note, c = sel.notes[k], sel.costs[k]
            flags = [name for name in ("reduced", "still_improving", "close", "local_optimum") if note[name]]
            method = "select (budgeted)" + (f", screen {args.screen_windows}" if screen else "")
            record(k, method, fraction, sel.chosen[k].dropped, c.evaluations, c.layer_token_forwards(tokens),
                   " ".join(flags), c.screen_evaluations)  # fmt: skip
            rows[-1]["budget"] = budget
    df = pd.DataFrame(rows)
    df.to_csv(RESULTS / f"{out}.csv", index=False)
    model_name = f"{params.export.base_model or params.base.model}, {n_layers} layers"
    command = "python -m bench.select_budget" + (f" --project <copy> --tag {args.tag}" if args.tag else "")
    command += "".join(f" --{f.replace('_', '-')} {v}" for f, v in changes.items())
    command += f" --screen-windows {args.screen_windows}" if args.screen_windows else ""
    plan_note = f" Search plan: `BudgetPlan({', '.join(f'{f}={v}' for f, v in changes.items())})`." if changes else ""
    if screen:
        plan_note += (
            f" Screen: the first {args.screen_windows} of the {len(windows)} calibration windows, each of its "
            f"evaluations paid at {screen.cost:.2f} of a full one (its share of the tokens); the budget counts "
            "full evaluations plus screening ones at that cost (`equivalent`), the choice is the best set by the "
            "full game."
        )
    write_report(df, full_ppl, corpora, tokens, out, model_name, command, plan_note)


def write_report(
    df: pd.DataFrame,
    full_ppl: float,
    corpora: list[str],
    tokens: int,
    name: str,
    model_name: str,
    command: str,
    plan_note: str = "",
) -> None:
    """``<name>.md`` (the table) and ``<name>.png`` (held-out PPL against budget, per k)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    md = [
        f"# Budgeted select against SLEB ({model_name})",
        "",
        f"`{command}` (after `dvc repro prepare_data`). Calibration game: 10 x 128 tokens, "
        f"fp32, full-model calibration PPL {full_ppl:.2f}; held-out PPL on the evaluate stage's windows. "
        f"Layer-token forwards = kept layers x {tokens} tokens per evaluation. Budgeted runs reuse no scored "
        "masks. Notes: `reduced` (the budget did not hold the lazy or screened greedy pass: more budget may change "
        "the set), "
        "`still_improving` (the last swaps still improved), "
        "`close` (runner-up within 1 % perplexity), `local_optimum` (every single swap measured, none better)."
        + plan_note,
        "",
        "| k | method | budget | LLM evaluations (screening) | equivalent | layer-token forwards (M) | dropped | "
        "calibration PPL | " + " | ".join(f"PPL {c}" for c in corpora) + " | notes |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(corpora) + "---|",
    ]
    for r in df.itertuples():
        label = "SLEB" if r.method == "SLEB" else f"{r.method}, {_fraction(r.fraction)} x SLEB"
        cells = " | ".join(f"{getattr(r, f'ppl_{c}'):.2f}" for c in corpora)
        md.append(
            f"| {r.k} | {label} | {r.budget} | {r.llm_evaluations} ({r.screen_evaluations}) | "
            f"{r.equivalent_evaluations:.1f} | {r.layer_token_forwards / 1e6:.2f} | "
            f"{r.dropped} | {r.calibration_ppl:.2f} | {cells} | {r.note if isinstance(r.note, str) else ''} |"
        )
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    curve = []  # for `dvc plots show` (template lines_by_method): one line per (k, method), SLEB flat
    for r in df.itertuples():
        fractions = FRACTIONS if r.method == "SLEB" else (r.fraction,)
        for f in fractions:
            curve += [{"method": f"k={r.k} {r.method}", "fraction": round(f, 4), "corpus": c,
                       "ppl": getattr(r, f"ppl_{c}")} for c in corpora]  # fmt: skip
    pd.DataFrame(curve).to_csv(RESULTS / f"{name}_plot.csv", index=False)
    fig, axes = plt.subplots(1, len(corpora), figsize=(4 * len(corpora), 3.2), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        for k in sorted(df["k"].unique()):
            sub = df[(df["k"] == k) & (df["method"] != "SLEB")]
            line = ax.plot(sub["fraction"], sub[f"ppl_{corpus}"], marker="o", label=f"select, k={k}")[0]
            ref = df[(df["k"] == k) & (df["method"] == "SLEB")][f"ppl_{corpus}"].iloc[0]
            ax.axhline(ref, color=line.get_color(), linestyle="--", linewidth=1)
        ax.set(xlabel="budget / SLEB's evaluations", ylabel=f"held-out PPL ({corpus})", title=corpus)
    axes[0][0].legend(fontsize=7, title="dashed: SLEB", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=110)
    print("\n".join(md))


def _fraction(f: float) -> str:
    return {0.25: "1/4", 0.5: "1/2", 1.0: "1"}.get(f, "1/3" if math.isclose(f, 1 / 3) else f"{f:.2f}")


if __name__ == "__main__":
    main()
