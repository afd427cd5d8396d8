"""What the ``compare`` stage shows: the markdown table, the verdict against the rivals, plot data and figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.compare_sets import MethodSets


def _fmt(x: object, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:,.{digits}f}" if isinstance(x, float) else f"{x:,}"


def markdown(
    table: pd.DataFrame,
    corpora: list[str],
    model: str,
    n_items: int | None,
    n_windows: dict,
    heading: str | None = None,
) -> str:
    """The comparison table: best non-oracle PPL per corpus and ``k`` in bold, then how it was measured."""
    lines = [
        heading or f"# Layer-pruning methods compared on {model}",
        "",
        "| method | removed | dropped layers | "
        + " | ".join(f"PPL {c}" for c in corpora)
        + " | mean acc ± s.e. | params kept | tokens/s | LLM evals | layer passes | scoring s |",
        "|---|---|---|" + "---|" * (len(corpora) + 6),
    ]
    for k, group in table.groupby("n_drop", sort=True):
        rivals = group[group.method != "oracle"]
        best = {c: rivals[f"ppl_{c}"].min() for c in corpora}
        for r in group.to_dict("records"):
            cells = [
                f"**{_fmt(r[f'ppl_{c}'])}**" if k > 0 and r["method"] != "oracle" and r[f"ppl_{c}"] == best[c]
                else _fmt(r[f"ppl_{c}"])
                for c in corpora
            ]  # fmt: skip
            evals, passes = r.get("llm_evaluations"), r.get("llm_layer_forwards")
            lines.append(
                f"| {r['method']} | {k} | {r['dropped']} | " + " | ".join(cells)
                + f" | {_fmt(r.get('mean_acc'), 3)} ± {_fmt(r.get('mean_acc_se'), 3)} | {100 * r['params_kept']:.1f} % "
                f"| {_fmt(r.get('tokens_per_s'), 0)} | {_fmt(None if pd.isna(evals) else int(evals))} "
                f"| {_fmt(None if passes is None or pd.isna(passes) else int(passes))} "
                f"| {_fmt(r.get('scoring_s'), 1)} |"
            )  # fmt: skip
    lines += [
        "",
        f"Held-out windows per corpus: {', '.join(f'{c} {n}' for c, n in n_windows.items())}; zero-shot: "
        f"{n_items or 'all'} items per task, the same items for every model (which differences are real: the paired "
        "intervals below). Bold: lowest perplexity among the non-oracle methods at that number of removed layers. "
        "LLM evals: forward passes of a (masked) model on calibration text spent choosing that set (select and "
        "shapley: the masks scored by score_masks, plus select's verification, shared by every k; sleb: its "
        "greedy steps up to k). layer passes: kept layers summed over those forward passes (a mask that keeps "
        "fewer layers costs less; times the calibration tokens: layer-token forwards). scoring s: time to choose "
        "the sets of every k together. tokens/s: one forward pass, best of two, indicative.",
    ]
    return "\n".join(lines) + "\n"


def paired_markdown(paired: pd.DataFrame, corpora: list[str], n_boot: int, heading: str) -> list[str]:
    """Per ``k`` and method, each metric against the best method's at that ``k``, with its paired interval."""
    if paired.empty:
        return []
    metrics = [f"ppl_{c}" for c in corpora] + ["mean_acc"]
    lines = [
        heading,
        "",
        "Each cell compares a method with the best one at that number of removed layers, on the same windows "
        "and items: its perplexity as a multiple of the best's, or its mean accuracy minus the best's, with the "
        f"95 % interval of {n_boot:,} paired bootstrap resamples (windows; items within each task). **Bold**: "
        "the interval excludes no difference, so the gap is real; otherwise it is within the noise. best: the "
        "best method on that metric; same set: it drops the best's very layers.",
        "",
        "| removed | method | " + " | ".join(f"PPL {c}" for c in corpora) + " | mean acc |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for k, group in paired.groupby("n_drop", sort=True):
        best = {m: group.loc[group.metric == m, "best"].iloc[0] for m in metrics if (group.metric == m).any()}
        for method in dict.fromkeys([*best.values(), *group.method]):
            cells = []
            for m in metrics:
                row = group[(group.metric == m) & (group.method == method)]
                if best.get(m) == method:
                    cells.append("best")
                elif row.empty:
                    cells.append("–")
                elif row.same_set.iloc[0]:
                    cells.append("same set")
                else:
                    r = row.iloc[0]
                    text = (
                        f"{r.estimate:.3f}x [{r.low:.3f}, {r.high:.3f}]"
                        if m != "mean_acc"
                        else f"{r.estimate:+.3f} [{r.low:+.3f}, {r.high:+.3f}]"
                    )
                    cells.append(f"**{text}**" if r.real else text)
            lines.append(f"| {k} | {method} | " + " | ".join(cells) + " |")
    return lines


def goal_lines(table: pd.DataFrame, corpora: list[str], me: str = "select", rival: str = "sleb") -> list[str]:
    """Per ``k``: does ``me`` have the lowest PPL of all non-oracle methods on each corpus, and acc >= ``rival``?"""
    out = []
    for k, group in table[table.n_drop > 0].groupby("n_drop"):
        mine = group[group.method == me]
        others = group[~group.method.isin([me, "oracle"])]
        if mine.empty or others.empty:
            continue
        m = mine.iloc[0]
        for c in corpora:
            b = others.loc[others[f"ppl_{c}"].idxmin()]
            mine_c, best_c = m[f"ppl_{c}"], b[f"ppl_{c}"]
            verdict = "win" if mine_c < best_c else "tie" if mine_c == best_c else "LOSS"
            out.append(f"- k={k}, {c}: {me} {mine_c:.2f} vs best other ({b.method}) {best_c:.2f}: {verdict}")
        r = group[group.method == rival]
        if not r.empty and "mean_acc" in group:
            diff = m.mean_acc - r.iloc[0].mean_acc
            out.append(
                f"- k={k}, mean acc: {me} {m.mean_acc:.3f} vs {rival} {r.iloc[0].mean_acc:.3f} "
                f"({diff:+.3f}; s.e. of each mean about {m.mean_acc_se:.3f})"
            )
    return out


def label(method: str, repair: str = "none") -> str:
    """``sleb`` as pruned, ``sleb+linear`` after the linear repair."""
    return method if repair == "none" else f"{method}+{repair}"


def ppl_long(table: pd.DataFrame, corpora: list[str]) -> pd.DataFrame:
    """``method, n_drop, corpus, ppl`` (every method starts from the full model at 0) for ``dvc plots``.

    A repaired row's method is labelled ``<method>+<repair>``.
    """
    full = table[table.method == "full"].iloc[0]
    repairs = table["repair"] if "repair" in table else pd.Series("none", index=table.index)
    labels = [label(m, r) for m, r in zip(table.method, repairs)]
    out = []
    for name in [m for m in dict.fromkeys(labels) if m != "full"]:
        rows = table[[lab == name for lab in labels]]
        for c in corpora:
            out.append({"method": name, "n_drop": 0, "corpus": c, "ppl": full[f"ppl_{c}"]})
            for r in rows.to_dict("records"):
                out.append({"method": name, "n_drop": r["n_drop"], "corpus": c, "ppl": r[f"ppl_{c}"]})
    return pd.DataFrame(out)


def repair_gain_lines(table: pd.DataFrame, corpora: list[str], repair: str = "linear") -> list[str]:
    """Per method and ``k``: PPL as pruned -> after ``repair`` on every corpus, and the mean accuracy change."""
    base = table[(table.repair == "none") & (table.n_drop > 0)].set_index(["method", "n_drop"])
    out = []
    for r in table[(table.repair == repair)].to_dict("records"):
        b = base.loc[(r["method"], r["n_drop"])]
        ppl = ", ".join(f"{c} {b[f'ppl_{c}']:.2f} -> {r[f'ppl_{c}']:.2f}" for c in corpora)
        acc = f"mean acc {b['mean_acc']:.3f} -> {r['mean_acc']:.3f}" if "mean_acc" in r else ""
        out.append(f"- {r['method']}, k={r['n_drop']}: {ppl}; {acc}")
    return out


def layer_ranks(methods: list[MethodSets]) -> pd.DataFrame:
    """``method, layer, rank`` for the methods that rank every layer (the heatmap's data)."""
    return pd.DataFrame(
        [
            {"method": m.method, "layer": layer, "rank": int(r)}
            for m in methods
            if m.rank is not None
            for layer, r in enumerate(m.rank)
        ],
        columns=["method", "layer", "rank"],
    )


def ppl_figure(long: pd.DataFrame, corpora: list[str], path: Path, highlight: str = "select"):
    """PPL vs layers removed, one panel per corpus and a line per method (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(corpora), figsize=(4.6 * len(corpora), 3.8), squeeze=False)
    for ax, c in zip(axes[0], corpora):
        for method, g in long[long.corpus == c].groupby("method", sort=False):
            style = {"lw": 2.6, "color": "k", "zorder": 3} if method == highlight else {"lw": 1.2}
            ax.plot(g.n_drop, g.ppl, marker="o", ms=3.5, label=method, **style)
        ax.set(xlabel="layers removed", ylabel="perplexity", title=c, yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def rank_figure(ranks: pd.DataFrame, table: pd.DataFrame, n_layers: int, path: Path):
    """Left: removal rank per layer and method. Right: the layers each (method, k) drops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pruned = table[table.n_drop > 0]
    grid = np.zeros((len(pruned), n_layers))
    for i, dropped in enumerate(pruned.dropped):
        grid[i, [int(x) for x in dropped.split()]] = 1
    labels = [f"{m} -{k}" for m, k in zip(pruned.method, pruned.n_drop)]
    methods = list(dict.fromkeys(ranks.method))
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(14, 0.28 * max(len(labels), 2 * len(methods)) + 1.6), gridspec_kw={"width_ratios": [1, 1]}
    )
    if methods:
        heat = ranks.pivot(index="method", columns="layer", values="rank").reindex(methods)
        im = left.imshow(heat.to_numpy(), cmap="viridis_r", aspect="auto")
        left.set_yticks(range(len(methods)), methods)
        fig.colorbar(im, ax=left, label="removal rank (1 = first)")
    left.set(xlabel="layer", title="removal rank per layer (bright = removed early)")
    right.imshow(grid, cmap="Greys", aspect="auto", vmin=0, vmax=1)
    right.set_yticks(range(len(labels)), labels, fontsize=7)
    right.set(xlabel="layer", title="dropped layers (black) per method and number removed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def compare_markdown(
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    corpora: list[str],
    model_name: str,
    n_items: int,
    n_windows: dict[str, int],
    bootstrap: int,
    repairs: list[str],
    notes: list[str],
) -> tuple[str, list[str]]:
    """``reports/compare.md``: the unrepaired table, select against the others and which differences are real,
    then the same after each repair, then what was not measured (``notes``). Returns the text and the goal
    lines (select against the other methods; a repair's prefixed with its name) that ``compare.json`` keeps."""
    full, none = table[table.method == "full"], table[table.repair == "none"]
    goal = goal_lines(none, corpora)
    text = markdown(none, corpora, model_name, n_items, n_windows)
    text += ("\n## select against the other methods\n\n" + "\n".join(goal) + "\n") if goal else ""
    real = paired_markdown(pairs[pairs.repair == "none"], corpora, bootstrap, "## Which differences are real")
    text += ("\n" + "\n".join(real) + "\n") if real else ""
    for repair in [r for r in repairs if r != "none"]:
        repaired = pd.concat([full, table[table.repair == repair]])
        heading = f"## After the {repair} repair (the repair stage's linear fit, made for each set; no parameter added)"
        text += "\n" + markdown(repaired, corpora, model_name, n_items, n_windows, heading)
        lines = goal_lines(repaired, corpora)
        text += (f"\n### select against the other methods, all {repair}-repaired\n\n" + "\n".join(lines) + "\n") * bool(
            lines
        )
        text += (
            f"\n### What the {repair} repair changes\n\n" + "\n".join(repair_gain_lines(table, corpora, repair)) + "\n"
        )
        heading = f"### Which differences are real, all {repair}-repaired"
        real = paired_markdown(pairs[pairs.repair == repair], corpora, bootstrap, heading)
        text += ("\n" + "\n".join(real) + "\n") if real else ""
        goal += [f"{repair}: {line.removeprefix('- ')}" for line in lines]
    text += ("\n## Not measured\n\n" + "\n".join(notes) + "\n") if notes else ""
    return text, goal
