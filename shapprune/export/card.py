"""The model card (``README.md``, Hugging Face's convention) of an exported pruned model, from plain values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from shapprune.data.domains import out_of_domain_ratio


@dataclass(frozen=True)
class Evaluation:
    """One model's held-out perplexities (corpus -> ppl) and zero-shot accuracies (task -> (acc, stderr, n))."""

    ppl: Mapping[str, float]
    zero_shot: Mapping[str, tuple[float, float, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class CardFacts:
    """What the card says: where the model came from, what was cut and repaired, what it costs, how it scores."""

    name: str
    base_model: str
    source: str  # what was loaded: base.model
    method: str
    n_layers_before: int
    dropped: Sequence[int]
    parameters_before: int
    parameters_after: int
    repair: str
    repair_detail: str
    llm_evaluations: int | None
    dtype: str
    full: Evaluation
    pruned: Evaluation
    command: str
    commit: str
    license: str | None = None
    files: Mapping[str, int] = field(default_factory=dict)  # shipped file -> bytes
    in_domain: Mapping[str, bool] = field(default_factory=dict)  # held-out corpus -> shares a source with the
    # calibration or repair text (shapprune.data.domains); empty: not labelled
    target: str | None = None  # prune.target's sentence: the budget asked for and what was reached


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _table(facts: CardFacts) -> list[str]:
    rows = ["| | full model | this model | ratio |", "|---|---:|---:|---:|"]
    ratios = {}
    for corpus, full in facts.full.ppl.items():
        mine = facts.pruned.ppl.get(corpus, math.nan)
        ratios[corpus] = mine / full
        label = facts.in_domain.get(corpus)
        where = "" if label is None else ", in-domain" if label else ", out of domain"
        rows.append(
            f"| perplexity, {corpus}{where} (lower is better) | {_fmt(full)} | {_fmt(mine)} | {_fmt(mine / full)}x |"
        )
    if facts.in_domain and set(facts.in_domain) >= set(ratios):
        ood = out_of_domain_ratio(ratios, facts.in_domain)
        if ood is not None:
            rows.append(f"| **perplexity out of domain** (geometric mean of the ratios) | | | **{_fmt(ood)}x** |")
    for task, (acc, se, n) in facts.full.zero_shot.items():
        m_acc, m_se, _ = facts.pruned.zero_shot.get(task, (math.nan, math.nan, 0))
        rows.append(
            f"| {task} acc ({n} items) | {_fmt(acc, 3)} ± {_fmt(se, 3)} | {_fmt(m_acc, 3)} ± {_fmt(m_se, 3)} | |"
        )
    return rows


def model_card(facts: CardFacts) -> str:
    """The card's text: YAML front matter (``base_model``, ``library_name``, tags) and a short body."""
    kept = facts.n_layers_before - len(facts.dropped)
    front = {
        "base_model": facts.base_model,
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["shapprune", "layer-pruning", f"pruned-{facts.method}"]
        + ([f"repair-{facts.repair}"] if facts.repair != "none" else []),
    }
    if facts.license:
        front["license"] = facts.license
    removed = 1 - facts.parameters_after / facts.parameters_before
    spent = "not recorded" if facts.llm_evaluations is None else f"{facts.llm_evaluations:,}"
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {facts.name}",
        "",
        f"{facts.base_model} with {len(facts.dropped)} of its {facts.n_layers_before} decoder layers removed "
        f"by shapprune ({facts.method}), {kept} kept.",
        "",
        f"- **Removed layers** (0-based, of the source): {', '.join(map(str, facts.dropped))}",
        f"- **Parameters**: {facts.parameters_after:,} of {facts.parameters_before:,} ({removed:.1%} removed)",
        f"- **Repair**: {facts.repair}" + (f" ({facts.repair_detail})" if facts.repair_detail else ""),
        f"- **LLM evaluations spent choosing the layers**: {spent}",
        *([f"- **Target**: {facts.target}"] if facts.target else []),
        f"- **Weights**: {facts.dtype} safetensors; loaded from `{facts.source}`",
        "",
        "## Evaluation",
        "",
        "Held-out text windows and zero-shot items that no stage of the pipeline saw while choosing or "
        "repairing (± is one standard error). A corpus is in-domain when its source also feeds the calibration or "
        "repair text; out of domain, when none does: expect the out-of-domain figure on your own text.",
        "",
        *_table(facts),
        "",
        "## Use it",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        "```",
        "",
        "## How it was made",
        "",
        f"`{facts.command}` at commit `{facts.commit}` (the parameters are in the project's `params.yaml`).",
    ]
    if facts.files:
        lines += ["", "## Files", "", "| file | MiB |", "|---|---:|"]
        lines += [f"| {name} | {size / 2**20:.1f} |" for name, size in facts.files.items()]
    return "\n".join(lines) + "\n"
