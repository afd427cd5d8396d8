"""How the default pipeline should reach its decision at k: three rules on the real calibration game.

Every rule draws on the same LLM game (fp32 calibration windows of a prepared project; values cached, so a
rerun only pays for masks not yet measured) and the same design (the paper's strata, ``--n-masks`` masks
interleaved over them, as ``sample_masks`` draws it):

- ``rounds``: ``score_masks.stop: decision`` (:mod:`shapprune.rounds`): design masks in rounds, the
  surrogate's proposals measured after each, resolved when its top set measures within 2 % of the best
  measured, two rounds in a row;
- ``incumbent``: a cheaper rule tried first: after each (smaller) round, the surrogate's two best sets plus
  its four best one-swap neighbours of the best measured set are measured; resolved when the best measured
  set survives two rounds unbeaten by more than 2 % (not in the package: it resolves on poor sets);
- ``budgeted``: the first ``--design`` masks as free known values, then the budgeted LLM search
  (:mod:`shapprune.select.budgeted`) at ``--fraction`` of SLEB's evaluations to k (the default since #45).

    python -m bench.decision_rules --root .      # bench/results/decision_rules.{json,md}; cache data/bench/
    python -m bench.decision_rules --root . --k 9 --rules budgeted,sleb --out decision_rules_k9
    python -m bench.decision_rules --root ../gemma --tag gemma --k 5 --rules budgeted,sleb --out decision_rules_gemma_k5
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.select_budget import Memo, sleb
from shapprune.baselines.cost import sleb_cost
from shapprune.config import load_params
from shapprune.estimators.budget import known_values, mask_key
from shapprune.estimators.regressors import fit_surrogate
from shapprune.estimators.replay import design
from shapprune.game import LayerGame
from shapprune.models import load_model
from shapprune.rounds import Pool, StopRule, interleave_by_size, score_until_resolved
from shapprune.select import budgeted_select
from shapprune.select.fit import surrogate_fit
from shapprune.select.moves import swaps
from shapprune.select.proposals import search_proposals
from tasks.shared.artifacts import read_windows
from tasks.shared.estimator import estimator_call

RESULTS, CACHE = Path("bench/results"), Path("data/bench/decision_rules_values.parquet")
Fit = Callable[[np.ndarray, np.ndarray, np.random.Generator], Callable[[np.ndarray], np.ndarray]]


def log_fit(kind: str, **options) -> Fit:
    """A surrogate of the log-utility (layer removals compound as a product of perplexity ratios)."""

    def fit(masks, values, rng):
        predict = fit_surrogate(kind, masks, np.log(np.clip(values, 1e-12, None)), rng, dict(options))
        return lambda m: np.exp(predict(m))

    return fit


FITS: dict[str, Fit] = {
    "mlp": surrogate_fit("mlp", {}),
    "ridge": surrogate_fit("ridge", {}),
    "quadratic": surrogate_fit("quadratic", {}),
    "log-ridge": log_fit("ridge"),
    "log-quadratic": log_fit("quadratic"),
}


def dropped(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(~mask).tolist()


def incumbent_rule(game, masks: np.ndarray, k: int, fit: Fit, round_size: int, cap: int) -> Pool:
    """The rejected cheaper rule (module docstring): a local search whose neighbours the surrogate ranks."""
    pool, start, stable, best_seen, rng = Pool(), 0, 0, None, np.random.default_rng(7)
    while pool.n_evaluations < cap and start < len(masks):
        pool.add(game, masks[start : start + min(round_size, cap - pool.n_evaluations)], "design")
        start += round_size
        predict = fit(*pool.arrays(), rng)
        rows = list(search_proposals(predict, masks.shape[1], k, 32, 2))
        incumbent = pool.best(k)[0]
        if incumbent is not None:
            seen = {mask_key(m) for m in pool.masks}
            moves = np.array([m for m in swaps(incumbent) if mask_key(m) not in seen])  # [n, L], unmeasured
            rows += list(moves[np.argsort(-predict(moves))[:4]])
        pool.add(game, np.array(rows)[: max(0, cap - pool.n_evaluations)], "proposal")
        value = pool.best(k)[1]
        improved = best_seen is None or value > best_seen * 1.02
        stable, best_seen = (0, value) if improved else (stable + 1, best_seen)
        if stable >= 2:
            pool.reason = "resolved"
            return pool
    pool.reason = "cap"
    return pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".")
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--n-masks", type=int, default=140, help="the design (and cap) of the two round rules")
    parser.add_argument("--design", type=int, default=25, help="design masks the budgeted search starts from")
    parser.add_argument(
        "--fraction",
        type=float,
        default=0.25,
        help="the budgeted search's share of SLEB's evaluations, below 1 (as select.budget)",
    )
    parser.add_argument("--rules", default="rounds,incumbent,budgeted,sleb", help="the rules to run, comma-separated")
    parser.add_argument("--out", default="decision_rules", help="bench/results/<out>.{json,md}")
    parser.add_argument("--tag", default="", help="another model's project: its own value cache (<tag> in the name)")
    args = parser.parse_args()
    root, k = Path(args.root), args.k
    params = load_params(root / "params.yaml")
    params = params.model_copy(
        update={"sample_masks": params.sample_masks.model_copy(update={"n_masks": args.n_masks})}
    )
    model = load_model(str(root / "data" / "model"), dtype=torch.float32, device="cpu")[0]
    windows = read_windows(root / "data" / "windows" / "calibration.parquet")
    cache = CACHE.with_name(CACHE.name.replace("rules_", f"rules_{args.tag}_")) if args.tag else CACHE
    game = Memo(LayerGame(model, windows, "ppl_ratio", 10, prefix_reuse=True), cache)
    n_layers = game.n_players
    call = estimator_call(params, n_layers, design=True)
    masks = interleave_by_size(design(call.name, n_layers, call.budget, call.rng(), **call.options))  # [m, L]
    sleb_evaluations = sleb_cost(n_layers, k)
    rows = []

    def record(rule: str, fit: str, chosen: np.ndarray, n_eval: int, reason: str) -> None:
        value = float(game(chosen[None])[0])
        rows.append({"rule": rule, "surrogate": fit, "evaluations": n_eval, "of_sleb": n_eval / sleb_evaluations,
                     "stop": reason, "dropped": dropped(chosen), "calibration_utility": value})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)

    rules = set(args.rules.split(","))
    for name in ("mlp", "ridge", "log-quadratic") if "rounds" in rules else ():
        pool = score_until_resolved(
            game, masks, [k], FITS[name], lambda p, n, kk: search_proposals(p, n, kk, 32, 3),
            StopRule(25, args.n_masks, 2, 0.02), np.random.default_rng(7),
        )  # fmt: skip
        record("rounds", name, pool.best(k)[0], pool.n_evaluations, pool.reason)
    for name in ("mlp", "ridge", "quadratic", "log-quadratic") if "incumbent" in rules else ():
        pool = incumbent_rule(game, masks, k, FITS[name], 10, args.n_masks)
        record("incumbent", name, pool.best(k)[0], pool.n_evaluations, pool.reason)
    if "budgeted" in rules:
        seed = masks[: args.design]
        known = known_values(n_layers, full=1.0) | {mask_key(m): float(v) for m, v in zip(seed, game(seed))}
        budget = params.select.model_copy(update={"budget": args.fraction}).evaluations(n_layers, [k])
        selection = budgeted_select(game, [k], budget, np.random.default_rng(0), known=known)
        record("budgeted", "-", selection.chosen[k].mask, args.design + selection.n_evaluations, f"budget {budget}")
    if "sleb" in rules:
        sleb_set = np.ones(n_layers, bool)
        sleb_set[sleb(game, k)] = False
        record("sleb", "-", sleb_set, sleb_cost(n_layers, k), "-")
    write(rows, k, args)


def write(rows: list[dict], k: int, args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"k": k, "args": vars(args), "rows": rows}, indent=1))
    lines = [
        f"# Decision rules at k = {k} (`python -m bench.decision_rules --k {k} --rules {args.rules}`)",
        "",
        "| rule | surrogate | LLM evaluations | of SLEB's | stop | dropped | calibration utility |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rule']} | {r['surrogate']} | {r['evaluations']} | {r['of_sleb']:.2f} | {r['stop']} | "
            f"{r['dropped']} | {r['calibration_utility']:.3f} |"
        )
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
