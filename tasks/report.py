"""The ``report`` stage's content: the markdown summary, the select section, metrics.json and plot data."""

from __future__ import annotations

import math
import textwrap

import pandas as pd

from shapprune.models import describe_weights
from tasks.shared.contracts import (
    EvalSummary,
    LayerTable,
    ModelSize,
    PruningRecord,
    RepairSummary,
    ScoringSummary,
    SelectionTable,
    SurrogateFidelity,
)


def summary_markdown(
    full: EvalSummary,
    pruned: EvalSummary,
    pruning: PruningRecord,
    surrogate: SurrogateFidelity,
    scoring: ScoringSummary,
    repaired: EvalSummary | None = None,
    repair: RepairSummary | None = None,
    weights: str | None = None,
) -> str:
    """The one-screen summary: what was measured (``weights``), what was dropped, what the repair did, and
    what it cost."""
    lines = [
        "# shapprune report",
        "",
        *([weights, ""] if weights else []),
        f"Dropped layers ({pruning.method}): **{pruning.dropped_layers}** "
        f"({pruning.n_dropped} of {pruning.n_layers_before}); parameters "
        f"{pruning.parameters_after:,} / {pruning.parameters_before:,} "
        f"({pruning.parameters_after / pruning.parameters_before:.1%}).",
        (
            f"Boundary separation: {pruning.boundary_z:.2f} standard errors "
            f"({'resolved' if pruning.boundary_separated else 'NOT resolved: more samples would help'})."
            if pruning.boundary_z is not None
            else "Boundary separation: n/a (a deterministic criterion has no standard errors)."
        ),
        "",
        f"Masks scored on the LLM: {scoring.n_masks} ({scoring.n_nonfinite} non-finite), "
        f"{scoring.seconds_per_mask:.2f} s/mask on {scoring.device}; full-model calibration PPL "
        f"{scoring.full_ppl:.3f}.",
        f"Surrogate held-out fit: R² {surrogate.r2:.3f}, Spearman "
        f"{surrogate.spearman:.3f} on {surrogate.n_validation} masks.",
        "",
        "| model | layers | " + " | ".join(f"PPL {k}" for k in full.ppl) + " | mean acc | mean acc_norm | tokens/s |",
        "|---|---|" + "---|" * (len(full.ppl) + 3),
    ]
    models = [("full", full), ("pruned", pruned)] + ([(f"repaired ({repair.method})", repaired)] if repaired else [])
    for name, m in models:
        lines.append(
            f"| {name} | {m.n_layers} | "
            + " | ".join(f"{m.ppl[k]:.2f}" for k in full.ppl)
            + f" | {m.mean_acc:.3f} | {m.mean_acc_norm:.3f} | {m.tokens_per_s:.0f} |"
        )
    if repair:
        lines[-len(models) - 2 : -len(models) - 2] = [repair_line(repair), ""]
    lines += [
        "",
        "| task | full acc | pruned acc | full acc_norm | pruned acc_norm | items |",
        "|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for task, f in full.zero_shot.items():
        p = pruned.zero_shot.get(task)
        lines.append(
            f"| {task} | {f.acc:.3f} ± {f.acc_stderr:.3f} | {p.acc if p else nan:.3f} ± "
            f"{p.acc_stderr if p else nan:.3f} | {f.acc_norm:.3f} | {p.acc_norm if p else nan:.3f} "
            f"| {f.n} |"
        )
    return "\n".join(lines + harness_lines(models)) + "\n"


def harness_lines(models: list[tuple[str, EvalSummary]]) -> list[str]:
    """The ``evaluate.lm_eval_tasks`` table: lm-eval's own metrics (± its standard error) of every model."""
    tasks = models[0][1].lm_eval
    if not tasks:
        return []
    lines = ["", "| lm-eval task | metric | " + " | ".join(name for name, _ in models) + " | documents |",
             "|---|---|" + "---|" * (len(models) + 1)]  # fmt: skip
    for task, metrics in tasks.items():
        for metric in (k for k in metrics if k not in ("n", "seconds") and not k.endswith("_stderr")):
            cells = []
            for _, m in models:
                r = m.lm_eval.get(task, {})
                se = r.get(f"{metric}_stderr")
                cells.append(f"{r[metric]:.4g}" + (f" ± {se:.3g}" if se is not None else "") if metric in r else "n/a")
            lines.append(f"| {task} | {metric} | " + " | ".join(cells) + f" | {int(metrics.get('n', 0))} |")
    return lines


def weights_line(model: ModelSize, scoring_dtype: str | None, eval_dtype: str | None) -> str:
    """What was measured, named honestly from prepare_model's record (``source``, ``n_layers``, ``parameters``):
    the model, the file its weights came from and how they were read, the precision of scoring and of evaluation."""
    source = str(model.source)
    name, how = describe_weights(source)
    precision = [
        f"{what} in {dtype}" for what, dtype in (("masks scored", scoring_dtype), ("evaluated", eval_dtype)) if dtype
    ]
    return (
        f"Model: **{name}** (`{source}`: {'; '.join([how, *precision])}); "
        f"{model.n_layers} layers, {model.parameters:,} parameters."
    )


def repair_line(repair: RepairSummary) -> str:
    """One sentence: how the cut was repaired, on what, at what cost."""
    parts = [f"Repair: **{repair.method}** on {repair.windows} calibration-source windows"]
    linear, lora = repair.linear, repair.lora
    if linear:
        runs = ", ".join(f"{r.start}-{r.stop - 1}" for r in linear.repaired)
        what = "seam projections refitted" if linear.fit == "refit" else "linear maps"
        parts.append(f"{what} for the runs {runs} ({linear.seconds:.0f} s)" if runs else "no linear map merged")
        parts += [f"run {r.start}-{r.stop - 1} left unrepaired: {r.reason}" for r in linear.skipped]
    if lora:
        parts.append(f"LoRA {lora.steps} steps, {lora.tokens:,} tokens ({lora.seconds:.0f} s)")
    return "; ".join(parts) + f"; {repair.parameters_added} parameters added."


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def _budgeted_lines(table: SelectionTable) -> list[str]:
    """For ``select.strategy: budgeted``: what each k cost and whether a larger budget may change it."""
    if table.strategy != "budgeted":
        return []
    out = ["", "Budgeted search on the LLM alone (no surrogate):"]
    for k, row in table.sets.items():
        warn = "; a larger budget may change it" if row.larger_budget_may_change else ""
        out.append(f"- k={k}: {row.evaluations} evaluations, {row.layer_token_forwards:,} layer-token forwards{warn}")
    return out


def report_section(table: SelectionTable, sleb: LayerTable | None = None) -> tuple[str, dict[str, float]]:
    """Markdown for the report and flat metrics: per k the chosen layers, predicted vs measured utility, and the
    ranking's (and SLEB's, when ``data/layer_scores`` holds its table) choice next to it."""
    if table.method != "select":
        return "", {}
    full_ppl = table.calibration_full_ppl
    lines = [
        "## Subset search (select)",
        "",
        f"{table.n_evaluations} LLM evaluations of a budget of {table.budget} ({table.rounds} rounds; "
        f"{table.n_calibration_evaluations} calibration, {table.n_validation_evaluations} validation). "
        "Utilities: calibration / validation `PPL_full / PPL_masked` (higher is better); predicted: the "
        "surrogate's prediction before the mask was measured.",
        *_budgeted_lines(table),
        "",
        "| k | choice | dropped layers | from | predicted | calibration | validation |",
        "|---|---|---|---|---|---|---|",
    ]
    metrics: dict[str, float] = {"select_n_evaluations": float(table.n_evaluations)}
    for k, row in table.sets.items():
        lines.append(
            f"| {k} | searched | {row.dropped} | {'+'.join(row.sources)} (round {row.round}) | "
            f"{_fmt(row.predicted)} | {_fmt(row.calibration)} | {_fmt(row.validation)} |"
        )
        measured = {"predicted": row.predicted, "calibration": row.calibration, "validation": row.validation}
        metrics |= {f"select_k{k}_{m}": v for m, v in measured.items() if v is not None}
        rank = row.ranking
        if rank is not None:
            same = sorted(rank.dropped) == sorted(row.dropped)
            lines.append(
                f"| {k} | ranking (drop lowest) | {rank.dropped} | {'same set' if same else 'contributions'} | – | "
                f"{_fmt(rank.calibration)} | {_fmt(rank.validation)} |"
            )
            ranked = {"calibration": rank.calibration, "validation": rank.validation}
            metrics |= {f"ranking_k{k}_{m}": v for m, v in ranked.items() if v is not None}
        if sleb is not None and sleb.method == "sleb" and k in sleb.chosen:
            ppl = sleb.ppl_after_step
            util = full_ppl / ppl[k - 1] if full_ppl and len(ppl) >= k else None
            lines.append(f"| {k} | SLEB | {sleb.chosen[k]} | data/layer_scores | – | {_fmt(util)} | – |")
    return "\n".join(lines) + "\n", metrics


def headline_metrics(
    full: EvalSummary,
    pruned: EvalSummary,
    pruning: PruningRecord,
    surrogate: SurrogateFidelity,
    scoring: ScoringSummary,
    repaired: EvalSummary | None = None,
) -> dict:
    """``metrics.json``: what was dropped and the full vs pruned (and repaired) quality, for ``dvc metrics diff``."""
    out = {
        "n_dropped": pruning.n_dropped,
        "dropped_layers": pruning.dropped_layers,
        "full": _quality(full),
        "pruned": _quality(pruned),
        "ppl_ratio": {k: pruned.ppl[k] / full.ppl[k] for k in full.ppl},
        "surrogate": {"val_r2": surrogate.r2, "val_spearman": surrogate.spearman},
        "scoring": {"n_masks": scoring.n_masks, "seconds_per_mask": scoring.seconds_per_mask},
        "parameters_kept": pruning.parameters_after / pruning.parameters_before,
    }
    if repaired:
        out["repaired"] = _quality(repaired)
        out["repaired_ppl_ratio"] = {k: repaired.ppl[k] / full.ppl[k] for k in full.ppl}
    return out


def _quality(m: EvalSummary) -> dict:
    return {"ppl": dict(m.ppl), "mean_acc": m.mean_acc, "mean_acc_norm": m.mean_acc_norm}


def flat_metrics(
    metrics: dict, full: EvalSummary, pruned: EvalSummary, repaired: EvalSummary | None = None
) -> dict[str, float]:
    """The stage run's MLflow metrics: per-corpus PPL, mean accuracy, the surrogate's fit and the cost."""
    flat = {f"pruned_ppl_{k}": v for k, v in pruned.ppl.items()} | {f"full_ppl_{k}": v for k, v in full.ppl.items()}
    if repaired:
        flat |= {f"repaired_ppl_{k}": v for k, v in repaired.ppl.items()} | {"repaired_mean_acc": repaired.mean_acc}
    return flat | {
        "pruned_mean_acc": pruned.mean_acc,
        "full_mean_acc": full.mean_acc,
        "surrogate_val_r2": metrics["surrogate"]["val_r2"],
        "surrogate_val_spearman": metrics["surrogate"]["val_spearman"],
        "n_dropped": metrics["n_dropped"],
        "n_masks_scored": metrics["scoring"]["n_masks"],
    }


def plot_frames(full: EvalSummary, pruned: EvalSummary, repaired: EvalSummary | None = None) -> dict[str, pd.DataFrame]:
    """``plots/report/{ppl,zero_shot}.csv``: full vs pruned (vs repaired) per corpus and per task."""
    models = (("full", full), ("pruned", pruned)) + ((("repaired", repaired),) if repaired else ())
    ppl = [{"corpus": k, "model": n, "bar": f"{k} ({n})", "ppl": m.ppl[k]} for n, m in models for k in m.ppl]
    zero_shot = [
        {"task": t, "model": n, "acc": r.acc, "acc_norm": r.acc_norm} for n, m in models for t, r in m.zero_shot.items()
    ]
    return {"ppl": pd.DataFrame(ppl), "zero_shot": pd.DataFrame(zero_shot)}


def compare_section(report_md: str) -> str:
    """The compare stage's report as a section of the summary (its headings one level down)."""
    lines = report_md.splitlines()
    return "\n" + "\n".join("#" + line if line.startswith("#") else line for line in lines) + "\n"


def layer_runs(layers: list[int]) -> str:
    """Layer indices as runs: ``[5, 12, 13, 14, 26]`` -> ``5, 12-14, 26``."""
    runs: list[list[int]] = []
    for i in sorted(layers):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _count(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


def headline_table(
    full: EvalSummary,
    pruned: EvalSummary,
    parameters: dict[str, int],
    dropped: list[int] | None = None,
    evaluations: tuple[int, float] | None = None,
    repaired: EvalSummary | None = None,
    repair: RepairSummary | None = None,
    model: str | None = None,
) -> str:
    """The README's headline: full / pruned / repaired, one row each, with layers, parameters and their bf16 size
    (parameters x 2 bytes), held-out PPL per corpus (and its multiple of the full model's), the mean zero-shot
    accuracies (the others as their difference from the full model's, in points) and what each row cost.

    ``parameters``: model (``full``, ``pruned``, ``repaired``) -> its parameter count; ``dropped``: the layers
    pruning removed; ``evaluations``: the LLM evaluations spent choosing them, as (score_masks' masks, select's
    verifications), None where the choice was not select's; ``model``: its name, for the caption. Every number
    comes from the arguments."""
    corpora = list(full.ppl)
    tasks = list(full.zero_shot.values())
    items = {t.n for t in tasks}
    stderr = 100 * math.sqrt(sum(t.acc_stderr**2 for t in tasks)) / len(tasks) if tasks else math.nan

    def size(which: str) -> str:
        n = parameters[which]
        kept = "" if which == "full" else f" ({n / parameters['full']:.1%})"
        return f"{n / 1e6:.1f} M{kept}, {2 * n / 1e6:.0f} MB"

    def ppl(m: EvalSummary) -> list[str]:
        if m is full:
            return [f"{m.ppl[c]:.2f}" for c in corpora]
        return [f"{m.ppl[c]:.2f} ({m.ppl[c] / full.ppl[c]:.2f}x)" for c in corpora]

    def zero_shot(m: EvalSummary) -> str:
        if m is full:
            return f"{100 * m.mean_acc:.1f} / {100 * m.mean_acc_norm:.1f} %"
        return f"{100 * (m.mean_acc - full.mean_acc):+.1f} / {100 * (m.mean_acc_norm - full.mean_acc_norm):+.1f} pt"

    removed = f" ({layer_runs(dropped)} removed)" if dropped else ""
    if evaluations is None:
        chose = "n/a (not chosen by select)"
    else:
        masks, verified = evaluations
        chose = (
            f"{_count(masks + verified)} LLM evaluations ({_count(masks)} masks scored, {_count(verified)} by select)"
        )
    rows = [("full", full, str(full.n_layers), "–"), ("pruned", pruned, f"{pruned.n_layers}{removed}", chose)]
    if repaired is not None and repair is not None:
        cost = f"pruned's + {repair.seconds:.0f} s of repair, {repair.parameters_added:,} parameters added"
        rows.append((f"repaired ({repair.method})", repaired, str(repaired.n_layers), cost))
    lines = [
        "| model | layers | parameters, bf16 size | "
        + " | ".join(f"PPL {c}" for c in corpora)
        + " | mean zero-shot acc / acc_norm | cost |",
        "|---|---|---|" + "---|" * len(corpora) + "---|---|",
    ]
    for (name, m, layers, cost), which in zip(rows, ("full", "pruned", "repaired")):
        lines.append(f"| {name} | {layers} | {size(which)} | " + " | ".join(ppl(m)) + f" | {zero_shot(m)} | {cost} |")
    per_task = f"{len(tasks)} tasks x {items.pop()} items" if len(items) == 1 else f"{len(tasks)} tasks"
    caption = (
        f"{f'{model}: ' if model else ''}held-out perplexity in {full.dtype or 'the base dtype'} (x: the full "
        f"model's); zero-shot: the mean of {per_task} (one standard error: {stderr:.1f} pt), the others as "
        "their difference; bf16 size: 2 bytes per parameter, MB = 10^6 bytes."
    )
    lines += ["", textwrap.fill(caption, 118, break_long_words=False, break_on_hyphens=False)]
    return "\n".join(lines) + "\n"
