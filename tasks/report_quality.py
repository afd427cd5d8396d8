"""The report's quality tables: which held-out corpora are out of domain and the figure there, and the zero-shot
differences with their paired intervals against chance and the majority-class rate."""

from __future__ import annotations

import numpy as np

from shapprune.data.domains import out_of_domain_ratio
from shapprune.evaluation.paired import PairedDiff, mean_of_differences, normal_difference
from tasks.shared.contracts import EvalSummary, TaskScore


def domain_section(
    labels: dict[str, list[str]],
    sources: dict[str, str],
    full: EvalSummary,
    pruned: EvalSummary,
    repaired: EvalSummary | None = None,
) -> tuple[list[str], dict]:
    """Which held-out corpora share a source with the calibration or repair text (``labels``: role -> the shared
    origins, :func:`shapprune.data.domains.label_corpora`), and the out-of-domain figure of the pruned (and
    repaired) model: the geometric mean of its PPL ratios over the others. Returns the lines and the record."""
    labels = {role: shared for role, shared in labels.items() if role in full.ppl}  # the corpora measured
    in_domain = {role: bool(shared) for role, shared in labels.items()}
    models = [("pruned", pruned)] + ([("repaired", repaired)] if repaired else [])
    ratios = {n: out_of_domain_ratio({c: m.ppl[c] / full.ppl[c] for c in full.ppl}, in_domain) for n, m in models}
    named = [
        f"{role} ({sources[role]}: " + (f"in-domain, shares {', '.join(shared)})" if shared else "out of domain)")
        for role, shared in labels.items()
    ]
    ood = [role for role, inside in in_domain.items() if not inside]
    lines = ["Held-out corpora: " + "; ".join(named) + "."]
    if ood:
        figures = ", ".join(f"{n} {r:.2f}x" for n, r in ratios.items() if r is not None)
        lines.append(
            f"**Out of domain** (the geometric mean of the PPL ratios to the full model over {', '.join(ood)}, "
            f"text no calibration or repair source shares a source with): {figures}."
        )
    else:
        lines.append(
            "Every held-out corpus shares a source with the calibration or repair text: no out-of-domain figure."
        )
    record = {"in_domain": in_domain, "corpora": ood} | {f"{n}_ppl_ratio": r for n, r in ratios.items()}
    return lines, record


def _diff(full: TaskScore, other: TaskScore | None) -> PairedDiff | None:
    """``other - full`` on the same items, where both recorded each item's outcome."""
    if other is None or not full.hits or len(full.hits) != len(other.hits) or len(full.hits) < 2:
        return None
    return normal_difference(np.array(full.hits), np.array(other.hits))


def _pt(d: PairedDiff | None) -> str:
    if d is None:
        return "–"
    mark = "" if d.real else " (noise)"
    return f"{100 * d.estimate:+.1f} pt [{100 * d.low:+.1f}, {100 * d.high:+.1f}]{mark}"


def zero_shot_lines(full: EvalSummary, pruned: EvalSummary, repaired: EvalSummary | None = None) -> list[str]:
    """Per task: the full model's accuracy against chance and the majority-class rate (a † where it is not above
    them), and the pruned (and repaired) model's difference from it with its 95 % paired interval; then the
    mean difference over tasks with its interval."""
    others = [("pruned", pruned)] + ([("repaired", repaired)] if repaired else [])
    head = "| task | full acc | chance / majority | " + " | ".join(f"{n} acc | {n} − full (95 %)" for n, _ in others)
    lines = ["", head + " | items |", "|---|---|---|" + "---|---|" * len(others) + "---|"]
    diffs: dict[str, list[PairedDiff]] = {n: [] for n, _ in others}
    floor_hit = False
    for task, f in full.zero_shot.items():
        floor = "–" if f.chance is None or f.majority is None else f"{f.chance:.2f} / {f.majority:.2f}"
        mark = " †" if f.above_floor is False else ""
        floor_hit |= bool(mark)
        cells = []
        for name, m in others:
            o = m.zero_shot.get(task)
            d = _diff(f, o)
            if d is not None:
                diffs[name].append(d)
            cells.append(("–" if o is None else f"{o.acc:.3f}") + f" | {_pt(d)}")
        lines.append(
            f"| {task}{mark} | {f.acc:.3f} ± {f.acc_stderr:.3f} | {floor} | " + " | ".join(cells) + f" | {f.n} |"
        )
    lines.append("")
    for name, ds in diffs.items():
        if len(ds) == len(full.zero_shot) and ds:
            mean = mean_of_differences(ds)
            lines.append(
                f"Mean over the {len(ds)} tasks, {name} − full: {_pt(mean)} (95 %, paired on each task's items)."
            )
    if floor_hit:
        lines.append(
            "† The full model is not above chance or the majority-class rate there (beyond its 95 % interval): "
            "a difference on that task says little about what pruning removed."
        )
    return lines
