"""The report's headline table: full / pruned / repaired, what each kept and what each cost (README's Result)."""

from __future__ import annotations

import math
import textwrap

from tasks.shared.contracts import EvalSummary, RepairSummary


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
