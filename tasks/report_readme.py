"""The README's Result table, generated from the committed run's metrics.

``python -m tasks.report_readme`` rewrites the block between ``<!-- result:begin -->`` and ``<!-- result:end -->``
in README.md from ``data/metrics/*.json`` and ``data/select/select.json`` (nothing else in the README);
``--check`` only says whether the block is stale (exit status 1). Run it after ``make repro``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shapprune.config import ConfigError, load_params
from shapprune.models import describe_weights
from tasks.report_headline import headline_table
from tasks.report_quality import domain_section
from tasks.shared.contracts import EvalSummary, ModelSize, RepairSummary, SelectionTable
from tasks.shared.paths import Paths

BEGIN, END = "<!-- result:begin -->", "<!-- result:end -->"


def result_block(root: Path) -> str:
    """The table (with its markers) that the committed metrics under ``root`` make."""
    paths = Paths(root)
    evals = {w: paths.eval_metrics(w) for w in ("full", "pruned", "repaired")}
    full, pruned = EvalSummary.read(evals["full"]), EvalSummary.read(evals["pruned"])
    parameters = {w: ModelSize.read(f).parameters for w, f in evals.items() if f.is_file()}
    repaired = repair = None
    if evals["repaired"].is_file() and paths.metrics_file("repair").is_file():
        repaired, repair = EvalSummary.read(evals["repaired"]), RepairSummary.read(paths.metrics_file("repair"))
    k = full.n_layers - pruned.n_layers
    selection = SelectionTable.read(paths.select_json) if paths.select_json.is_file() else None
    searched = selection is not None and selection.method == "select" and k in selection.chosen
    evaluations = None
    if searched:
        evaluations = (
            selection.design_evaluations(paths.metrics_file("score_masks")),
            selection.equivalent_evaluations,
        )
    dropped = repair.dropped_layers if repair else selection.chosen[k] if searched else None
    source = ModelSize.read(paths.metrics_file("prepare_model")).source
    model = describe_weights(source)[0] if source else None
    table = headline_table(full, pruned, parameters, dropped, evaluations, repaired, repair, model)
    data = load_params(paths.params).prepare_data
    labels = data.domain_labels()
    domains = domain_section(labels, dict(data.eval_corpora), full, pruned, repaired)[0]
    return f"{BEGIN}\n{table}\n{domains[-1]}\n{END}"


def with_block(readme: str, block: str) -> str:
    """``readme`` with the text between (and including) its markers replaced by ``block``."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ConfigError(f"README.md: no {BEGIN} ... {END} block to fill")
    return readme[:start] + block + readme[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the project root (default: .)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the README's block is stale")
    args = parser.parse_args(argv)
    readme = args.root / "README.md"
    text = readme.read_text()
    updated = with_block(text, result_block(args.root))
    if updated == text:
        return 0
    if args.check:
        print(f"{readme}: the Result table is stale; run `python -m tasks.report_readme`", file=sys.stderr)
        return 1
    readme.write_text(updated)
    print(f"{readme}: Result table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
