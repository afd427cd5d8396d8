"""Repair on the default model, side by side in one run: each method's sets as pruned and after each repair.

The sets come from ``data/compare/compare.csv`` (what every method drops at every k); every (set, repair) is
rebuilt from ``data/model`` and repaired exactly as the ``repair`` stage would (``params.yaml``: ``repair.*``,
the repair windows), then measured on compare's held-out windows and, with ``--items``, zero-shot items.
All rows of one run share the dtype, windows and items, so their differences are the repair's.

    python -m bench.repair                                       # sleb at every k: none, linear, lora, linear+lora
    python -m bench.repair --methods sleb,block_influence --repairs none,linear --items 0 --dtype float32
    python -m bench.repair --repairs none,linear --fits map,refit    # the two linear fits side by side
    python -m bench.repair --ks 6 --repairs linear --fits map,refit --losses lstsq,cosine   # + ReplaceMe's cosine map
    python -m bench.repair --root <gemma root> --sets <csv> --repairs none,lora   # another model's project root
    python -m bench.repair --repair-texts calibration wiki_extracts:0.5+coqa_stories:0.5   # repair text mixes

``--repair-texts`` repairs on other text than ``data/windows/repair.parquet`` (``calibration``): each mix is
drawn as ``prepare_data.repair_mix`` would draw it, and the held-out windows drawn with it are checked equal
to the stored ones.
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.repair_text import CALIBRATION, repair_text, slug
from shapprune.config import load_params
from shapprune.evaluation import paired as pairing
from shapprune.evaluation import variants
from shapprune.evaluation.zero_shot import load_task
from shapprune.models import load_model
from shapprune.repair.linear import fit_maps
from shapprune.repair.lora import lora_heal
from shapprune.repair.seams import dropped_runs
from shapprune.streams import stream
from shapprune.surgery import keep_layers, num_layers
from tasks.shared.artifacts import read_windows
from tasks.shared.paths import Paths

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"
REPAIRS = ("none", "linear", "lora", "linear+lora")
MIX_DOMAINS = (
    "A mix with coqa_stories adds other domains' documents, none of them held out: children's stories, exam "
    "passages and Gutenberg literature (no held-out corpus), CNN news (the news corpus is ABC news) and Wikipedia "
    "articles (the web corpus is a Wikipedia dump), so news and web then measure transfer to another outlet and "
    "to other articles, not to an unseen domain. "
)


def _default_root(root: Path) -> bool:
    """Whether ``root`` is this repository (the default model) rather than another model's project root."""
    return Path(root).resolve() == ROOT


def linear_maps(
    paths: Paths, params, sets: list[list[int]], fit: str, ridge: float, windows: np.ndarray, loss: str | None = None
) -> tuple[dict, float]:
    """Every run's fit for all ``sets`` in one pass over ``windows`` (fp32, as the repair stage fits)."""
    cfg = params.repair
    model, _ = load_model(str(paths.model), dtype=torch.float32)
    runs = sorted({r for s in sets for r in dropped_runs(variants.keep_mask(num_layers(model), s))})
    start = time.perf_counter()
    loss = loss or cfg.loss
    maps, _, skipped = fit_maps(model, runs, windows[: cfg.linear_windows], ridge=ridge, loss=loss, fit=fit)
    for s in skipped:
        print(f"run {s.start}-{s.stop - 1} left unrepaired: {s.reason}")
    return {(m.seam.start, m.seam.stop): m for m in maps}, time.perf_counter() - start


def repaired(
    paths: Paths, params, dropped: list[int], repair: str, dtype: torch.dtype, maps: dict, fit: str = "-",
    lora_loss: str = "ce", windows: np.ndarray | None = None, text: str = CALIBRATION,
):  # fmt: skip
    """The full model cut to ``dropped``, repaired as ``repair.method: <repair>`` would; (model, tokenizer, info).

    The linear maps are the repair stage's (each run fitted on the full model's states, independently of the
    other runs, so fitting them all at once gives the same maps as ``linear_repair`` per set).
    """
    cfg = params.repair
    model, tokenizer = load_model(str(paths.model), dtype=torch.float32)  # the repair stage works in fp32
    keep = variants.keep_mask(num_layers(model), dropped)
    windows = read_windows(paths.repair_windows) if windows is None else windows  # [n, T]
    start, info = time.perf_counter(), {}
    if repair in ("linear", "linear+lora"):
        runs = [r for r in dropped_runs(keep) if r in maps]
        with torch.no_grad():
            for r in runs:
                maps[r].merge(model.get_submodule(maps[r].seam.target))
        info["runs_repaired"] = " ".join(f"{a}-{b - 1}" for a, b in runs)
    keep_layers(model, keep)
    if repair in ("lora", "linear+lora"):
        suffix = f"-{fit}" if repair == "linear+lora" else ""
        project = "" if _default_root(paths.root) else f"{paths.root.resolve().name}-"  # another model's root
        suffix += "" if lora_loss == "ce" else f"-{lora_loss}"
        suffix += "" if text == CALIBRATION else f"-{slug(text)}"
        work = OUT / "work" / f"lora-{project}{'-'.join(map(str, dropped))}-{repair}{suffix}"  # one per recipe
        teacher = load_model(str(paths.model), dtype=torch.float32)[0] if lora_loss == "kd" else None
        model, healed = lora_heal(
            model, windows, steps=cfg.lora_steps, rng=stream(params.base.seed, "lora"),
            batch_size=cfg.lora_batch_size, r=cfg.lora_r, alpha=cfg.lora_alpha, lr=cfg.lora_lr,
            checkpoint_dir=work, checkpoint_every=cfg.checkpoint_every, loss=lora_loss, teacher=teacher,
        )  # fmt: skip
        del teacher
        info |= {"lora_loss_first": healed.losses[0], "lora_loss_last": healed.losses[-1]}
    info["repair_s"] = time.perf_counter() - start if repair != "none" else 0.0  # + the shared fit, see below
    return model.to(dtype).eval(), tokenizer, info


def measure(model, tokenizer, corpora: dict, items: dict, batch_size: int) -> dict:
    """Held-out PPL per corpus and (with items) zero-shot accuracy of a model, every layer it has kept."""
    keep = np.ones(num_layers(model), dtype=bool)
    out = variants.variant_perplexities(model, corpora, keep[None], batch_size, 0.0, per_window=True)[0]
    return out | (variants.variant_zero_shot(model, tokenizer, keep, items, batch_size) if items else {})


def markdown(table: pd.DataFrame, corpora: list[str], note: str, model: str = "the default model") -> str:
    full = table.iloc[0]
    has_acc, has_text = "mean_acc" in table, "text" in table
    lines = [
        f"# Repair on {model}, side by side",
        "",
        "| method | removed | dropped | repair | fit | " + ("repair text | " if has_text else "")
        + " | ".join(f"PPL {c} (x full)" for c in corpora)
        + (" | mean acc ± s.e." if has_acc else "") + " | repair s |",
        "|---|---|---|---|---|" + "---|" * (len(corpora) + 1 + has_acc + has_text),
    ]  # fmt: skip
    for r in table.to_dict("records"):
        cells = [f"{r[f'ppl_{c}']:.2f} ({r[f'ppl_{c}'] / full[f'ppl_{c}']:.2f}x)" for c in corpora]
        acc = [f"{r['mean_acc']:.3f} ± {r['mean_acc_se']:.3f}"] if has_acc else []
        lines.append(
            f"| {r['method']} | {r['n_drop']} | {r['dropped']} | {r['repair']} | {r['fit']} | "
            + (f"{r['text']} | " if has_text else "")
            + " | ".join(cells + acc)
            + f" | {r['repair_s']:.0f} |"
        )  # fmt: skip
    return "\n".join(lines + ["", note]) + "\n"


def paired_lines(table: pd.DataFrame, windows: dict, corpora: list[str], ref: str, tokens: int) -> list[str]:
    """Each row against ``ref``'s row at the same k, repair and fit: PPL ratio and paired 95 % interval."""
    lines = [
        f"## Paired against {ref}",
        "",
        f"PPL as a multiple of {ref}'s at the same k, repair and fit, on the same windows, with the 95 % interval "
        "of 2,000 paired bootstrap resamples of the windows; **bold**: the interval excludes 1 (a real difference).",
        "",
        "| method | removed | repair | fit | " + " | ".join(f"PPL {c} / {ref}'s" for c in corpora) + " |",
        "|---|---|---|---|" + "---|" * len(corpora),
    ]
    rng = np.random.default_rng(0)
    for i, r in table.iterrows():
        same = (table.n_drop == r.n_drop) & (table.repair == r.repair) & (table.fit == r.fit)
        match = table[(table.method == ref) & same & ((table.text == r.text) if "text" in table else True)]
        if r.method == ref or r.n_drop == 0 or match.empty:
            continue
        cells = []
        for c in corpora:
            d = pairing.ppl_ratio(windows[i][c], windows[match.index[0]][c], tokens, 2000, rng)
            text = f"{d.estimate:.3f}x [{d.low:.3f}, {d.high:.3f}]"
            cells.append(f"**{text}**" if d.real else text)
        lines.append(f"| {r.method} | {r.n_drop} | {r.repair} | {r.fit} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="sleb", help="comma-separated methods of data/compare/compare.csv")
    parser.add_argument("--sets", default=None, help="a CSV of more sets (method, n_drop, dropped), all measured")
    parser.add_argument("--ks", default=None, help="comma-separated numbers of removed layers (default: all)")
    parser.add_argument("--repairs", default=",".join(REPAIRS))
    parser.add_argument("--fits", default=None, help="linear fits to compare, e.g. map,refit (default: repair.fit)")
    parser.add_argument("--ridges", default=None, help="linear fits' ridge values to compare (default: repair's)")
    parser.add_argument("--losses", default=None, help="linear fits' losses to compare, e.g. lstsq,cosine (map only)")
    parser.add_argument("--lora-steps", type=int, default=None, help="LoRA steps (default: repair.lora_steps)")
    parser.add_argument("--lora-losses", default=None, help="LoRA losses to compare, e.g. ce,kd (default: repair's)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--eval-windows", type=int, default=None, help="held-out windows per corpus (compare's)")
    parser.add_argument("--items", type=int, default=None, help="zero-shot items per task (compare's; 0: none)")
    parser.add_argument("--pair-with", default=None, help="a method every other row is compared with, paired")
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="a project root of another model (its params.yaml, "
        "data/model and data/windows, after prepare_data there); then --sets names the sets",
    )
    parser.add_argument("--repair-texts", nargs="+", default=None,
                        help="repair text per row: calibration (the stored windows) and/or mixes like "
                        "wiki_extracts:0.5+coqa_stories:0.5 (prepare_data.repair_mix)")  # fmt: skip
    parser.add_argument("--out", default="repair")
    args = parser.parse_args()
    params, paths = load_params(args.root / "params.yaml"), Paths(args.root)
    if args.lora_steps is not None:
        params.repair = params.repair.model_copy(update={"lora_steps": args.lora_steps})
    cut = args.eval_windows or params.compare.eval_windows
    corpora = {r: read_windows(paths.eval_windows(r))[:cut] for r in params.prepare_data.eval_corpora}
    n_items = params.compare.n_items if args.items is None else args.items
    rng = np.random.default_rng
    items = {t: load_task(t, n_items, rng(params.base.seed)) for t in params.evaluate.tasks} if n_items else {}
    compared = paths.compare_dir / "compare.csv"
    sets = pd.read_csv(compared) if compared.exists() else pd.DataFrame(columns=["method", "n_drop", "dropped"])
    if "repair" in sets:
        sets = sets[sets.repair == "none"]
    methods = args.methods.split(",")
    if args.sets:
        extra = pd.read_csv(args.sets)
        sets = pd.concat([sets, extra[["method", "n_drop", "dropped"]]], ignore_index=True)
        methods += [m for m in dict.fromkeys(extra.method) if m not in methods]
    ks = sorted(sets.n_drop.unique()[1:]) if args.ks is None else [int(k) for k in args.ks.split(",")]
    dtype = getattr(torch, args.dtype)
    began = time.perf_counter()
    full, tokenizer = load_model(str(paths.model), dtype=dtype)
    rows = [{"method": "full", "n_drop": 0, "dropped": "-", "repair": "none", "fit": "-", "repair_s": 0.0}
            | measure(full, tokenizer, corpora, items, params.compare.batch_size)]  # fmt: skip
    del full
    chosen = [
        (m, k, rows_mk.iloc[0].dropped)
        for m in methods
        for k in ks
        if len(rows_mk := sets[(sets.method == m) & (sets.n_drop == k)])
    ]  # fmt: skip (a method may lack a k)
    linear = any(r.startswith("linear") for r in args.repairs.split(","))
    ridges = [float(r) for r in (args.ridges or str(params.repair.ridge)).split(",")]
    losses = (args.losses or params.repair.loss).split(",")
    fit_names = (args.fits or params.repair.fit).split(",")
    cosine_refit = ("refit", "cosine")  # not a fit: the cosine loss fits maps only
    kinds = [(f, r, s) for f in fit_names for r in ridges for s in losses if (f, s) != cosine_refit] if linear else []
    fits = [  # a label per (fit, ridge, loss)
        f + ("" if len(ridges) == 1 else f", ridge {r:g}") + ("" if len(losses) == 1 else f", {s}") for f, r, s in kinds
    ]
    all_sets = [[int(x) for x in d.split()] for _, _, d in chosen]
    texts = {spec: repair_text(paths, params, spec) for spec in args.repair_texts or [CALIBRATION]}
    labelled = args.repair_texts is not None  # a "text" column in the table
    if labelled:
        rows[0]["text"] = "-"
    maps, fit_s = {}, 0.0
    for text, windows in texts.items():
        for label, (fit, ridge, loss) in zip(fits, kinds):
            maps[text, label], seconds = linear_maps(paths, params, all_sets, fit, ridge, windows, loss)
            fit_s += seconds
    lora_losses = (args.lora_losses or params.repair.lora_loss).split(",")
    for method, k, dropped in chosen:
        for repair in args.repairs.split(","):
            for text, fit, lora_loss in product(texts if repair != "none" else ["-"],
                                                fits if repair.startswith("linear") else ["-"],
                                                lora_losses if repair.endswith("lora") else ["-"]):  # fmt: skip
                model, tokenizer, info = repaired(
                    paths, params, [int(x) for x in dropped.split()], repair, dtype, maps.get((text, fit), {}), fit,
                    lora_loss, texts.get(text), text,
                )  # fmt: skip
                metrics = measure(model, tokenizer, corpora, items, params.compare.batch_size)
                repair_name = repair if lora_loss in ("-", "ce") else f"{repair} ({lora_loss})"
                row = {"method": method, "n_drop": k, "dropped": dropped, "repair": repair_name, "fit": fit}
                rows.append(row | ({"text": text} if labelled else {}) | info | metrics)
                print(f"{method} -{k} {repair} {fit} {text}: "
                      + ", ".join(f"{c} {metrics[f'ppl_{c}']:.2f}" for c in corpora)
                      + f" ({info['repair_s']:.0f} s repair)", flush=True)  # fmt: skip
    windows = [{c: row.pop(f"window_nll_{c}") for c in corpora} for row in rows]  # per row: corpus -> [W]
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / f"{args.out}.csv", index=False)
    command = "python -m bench.repair " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
        if v is not None and not (k == "out" and v == "repair") and not (k == "root" and _default_root(v))
    )
    note = (
        f"Model: `{params.base.model}`; {args.dtype}; "
        f"held-out windows per corpus: {', '.join(f'{c} {len(w)}' for c, w in corpora.items())} "
        f"(compare's); zero-shot: {f'{n_items} items per task' if items else 'not measured'}. Repairs as the "
        f"repair stage does them (repair.ridge {params.repair.ridge} unless the fit names another, "
        f"loss {params.repair.loss} unless the fit names another (cosine: ReplaceMe's, from the lstsq start); "
        "fit: map = a d x d "
        "map on the seam projection's output, refit = the projection refitted; "
        f"{params.prepare_data.repair_windows} repair windows (repair text: calibration = the calibration source's "
        "documents, a mix = prepare_data.repair_mix's shares); LoRA "
        f"{params.repair.lora_steps} steps of {params.repair.lora_batch_size} windows, r {params.repair.lora_r}, "
        f"alpha {params.repair.lora_alpha}, lr {params.repair.lora_lr}; loss ce, the LM loss on the windows, "
        "unless the repair says (kd): distilling the full model's next-token distribution). "
        "The wiki held-out windows share the calibration source's domain; with calibration text alone, news and "
        "web measure what transfers. "
        + (MIX_DOMAINS if any(t != CALIBRATION for t in texts) else "")
        + "repair s: wall time on this machine, "
        f"indicative, after the linear fits of every run were made in one pass over the repair windows per fit "
        f"({fit_s:.0f} s); the whole run took {time.perf_counter() - began:.0f} s. Reproduce: `{command}`."
    )
    heading = "the default model" if _default_root(args.root) else f"`{params.base.model}`"
    text = markdown(table, list(corpora), note, heading)
    if args.pair_with:
        tokens = next(iter(corpora.values())).shape[1] - 1  # predicted tokens per window
        text += "\n" + "\n".join(paired_lines(table, windows, list(corpora), args.pair_with, tokens)) + "\n"
    (OUT / f"{args.out}.md").write_text(text)
    (OUT / f"{args.out}.json").write_text(json.dumps({"args": vars(args)}, indent=2, default=str) + "\n")
    print(text)


if __name__ == "__main__":
    main()
