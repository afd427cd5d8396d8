"""The ``report`` stage's content: the markdown summary, the select section, metrics.json and plot data."""

from __future__ import annotations

import pandas as pd

from shapprune.models import describe_weights
from tasks.report_quality import zero_shot_lines
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
    domains: list[str] | None = None,
) -> str:
    """The one-screen summary: what was measured (``weights``), what was dropped, what the repair did, what it
    cost, and which held-out corpora are out of domain (``domains``: :func:`domain_section`'s lines)."""
    lines = [
        "# shapprune report",
        "",
        *([weights, ""] if weights else []),
        f"Dropped layers ({pruning.method}): **{pruning.dropped_layers}** "
        f"({pruning.n_dropped} of {pruning.n_layers_before}); parameters "
        f"{pruning.parameters_after:,} / {pruning.parameters_before:,} "
        f"({pruning.parameters_after / pruning.parameters_before:.1%}).",
        *([f"Target: {pruning.target.line()}"] if pruning.target else []),
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
    lines += ["", *domains] if domains else []
    lines += zero_shot_lines(full, pruned, repaired)
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
