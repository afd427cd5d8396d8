"""Stage ``compare``: every pruning method at several ratios, measured on the same held-out text and tasks.

For each method in ``compare.methods`` and each ``k = round(ratio * L)`` of ``compare.ratios``: the layers it
drops (``select`` and ``shapley`` from their stages, the baselines scored here on the calibration windows
with ``score_layers``' options), then held-out perplexity per corpus, mean zero-shot accuracy (``n_items``
per task of ``evaluate.tasks``), kept parameters and tokens/s of that variant. Writes
``data/compare/compare.{csv,json}``, ``reports/compare.md``, ``plots/compare/*`` and one nested MLflow run
per (method, k). Every scored method and evaluated set is checkpointed under ``data/.compare_work/``: a
killed run resumes, methods that drop the same layers share one evaluation, and adding a method or a ratio
evaluates only the new sets.
"""

from __future__ import annotations

import inspect
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shapprune.baselines import layer_scores
from shapprune.checkpoint import PartStore, fingerprint
from shapprune.evaluation import variants
from shapprune.evaluation.zero_shot import load_task
from shapprune.models import describe_weights
from shapprune.prefix import score_with_prefix_reuse
from shapprune.repair.linear import fit_maps
from shapprune.streams import stream
from shapprune.surgery import num_layers
from tasks import compare as cmp
from tasks import compare_report as rpt
from tasks import compare_sets as cs
from tasks.shared.artifacts import read_windows
from tasks.shared.contracts import write_json
from tasks.shared.model import load_stage_model
from tasks.shared.paths import Paths
from tasks.shared.plots import close
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker

WORK = ("data", ".compare_work")
# the code that computes the numbers (not this file's orchestration): a change there invalidates those parts
SCORE_CODE = tuple(sorted(Path(inspect.getfile(layer_scores)).parent.glob("*.py")))  # the baselines
EVAL_CODE = (
    Path(inspect.getfile(variants)),
    Path(inspect.getfile(load_task)),
    Path(inspect.getfile(score_with_prefix_reuse)),
)
REPAIR_CODE = tuple(sorted(Path(inspect.getfile(fit_maps)).parent.glob("*.py")))


def work_stores(stage: Stage, model) -> tuple[PartStore, PartStore]:
    """Checkpoint folders of the baselines' scores and of the evaluations, each keyed by what changes it.

    A repaired set's parts (``*-linear-<key>``) also depend on the repair windows, options and code.
    """
    p, paths = stage.params, stage.paths
    weight = next(model.parameters())
    common = [*sorted(paths.model.glob("*.safetensors")), *sorted(paths.model.glob("*.json")),
              str(weight.dtype), str(weight.device), str(p.base.seed)]  # fmt: skip
    scores = fingerprint([*common, paths.calibration, *SCORE_CODE, p.score_layers.model_dump_json()])
    evals = fingerprint(
        [*common, *(paths.eval_windows(r) for r in p.prepare_data.eval_corpora), *EVAL_CODE,
         p.compare.model_dump_json(exclude={"methods", "ratios", "repairs", "bootstrap"}), str(p.evaluate.tasks),
         *((paths.repair_windows, *REPAIR_CODE,
            p.repair.model_dump_json(include={"ridge", "loss", "fit", "linear_windows"}))
           if "linear" in p.compare.repairs else ())]
    )  # fmt: skip
    return PartStore(paths.root.joinpath(*WORK, f"scores-{scores}")), PartStore(paths.root.joinpath(*WORK, evals))


method_sets = task(name="score-method", cache_policy=NO_CACHE)(cs.method_sets)
evaluate_sets = task(name="evaluate-variants", cache_policy=NO_CACHE)(cmp.evaluate_sets)
evaluate_repaired_sets = task(name="evaluate-repaired-variants", cache_policy=NO_CACHE)(cmp.evaluate_repaired_sets)


def write_outputs(
    stage: Stage,
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    methods: list[cs.MethodSets],
    corpora: list[str],
    n_layers: int,
):
    """CSV/JSON tables, markdown report, plot data and figures; returns the two figures and the report."""
    paths, cfg = stage.paths, stage.params.compare
    paths.compare_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(paths.compare_dir / "compare.csv", index=False)
    pairs.to_csv(paths.compare_dir / "paired.csv", index=False)
    n_windows = {r: len(read_windows(paths.eval_windows(r))[: cfg.eval_windows]) for r in corpora}
    name, how = describe_weights(stage.params.base.model)
    model_name = f"{name} ({how})"
    full, none = table[table.method == "full"], table[table.repair == "none"]
    goal = rpt.goal_lines(none, corpora)
    notes = [f"- {n}" for m in methods for n in m.notes]
    text = rpt.markdown(none, corpora, model_name, cfg.n_items, n_windows)
    text += ("\n## select against the other methods\n\n" + "\n".join(goal) + "\n") if goal else ""
    real = rpt.paired_markdown(pairs[pairs.repair == "none"], corpora, cfg.bootstrap, "## Which differences are real")
    text += ("\n" + "\n".join(real) + "\n") if real else ""
    for repair in [r for r in cfg.repairs if r != "none"]:
        repaired = pd.concat([full, table[table.repair == repair]])
        heading = f"## After the {repair} repair (the repair stage's linear fit, made for each set; no parameter added)"
        text += "\n" + rpt.markdown(repaired, corpora, model_name, cfg.n_items, n_windows, heading)
        lines = rpt.goal_lines(repaired, corpora)
        text += (f"\n### select against the other methods, all {repair}-repaired\n\n" + "\n".join(lines) + "\n") * bool(
            lines
        )
        text += (
            f"\n### What the {repair} repair changes\n\n"
            + "\n".join(rpt.repair_gain_lines(table, corpora, repair))
            + "\n"
        )
        heading = f"### Which differences are real, all {repair}-repaired"
        real = rpt.paired_markdown(pairs[pairs.repair == repair], corpora, cfg.bootstrap, heading)
        text += ("\n" + "\n".join(real) + "\n") if real else ""
        goal += [f"{repair}: {line.removeprefix('- ')}" for line in lines]
    text += ("\n## Not measured\n\n" + "\n".join(notes) + "\n") if notes else ""
    paths.compare_report.parent.mkdir(parents=True, exist_ok=True)
    paths.compare_report.write_text(text)
    write_json(
        paths.compare_dir / "compare.json",
        {"corpora": corpora, "n_layers": n_layers, "n_windows": n_windows, "n_items": cfg.n_items,
         "goal": goal, "notes": notes, "rows": table.replace({np.nan: None}).to_dict("records"),
         "paired": pairs.replace({np.nan: None}).to_dict("records")},
    )  # fmt: skip
    out = paths.plots / "compare"
    out.mkdir(parents=True, exist_ok=True)
    long = rpt.ppl_long(table, corpora)
    long.to_csv(out / "ppl.csv", index=False)
    ranks = rpt.layer_ranks(methods)
    ranks.to_csv(out / "ranks.csv", index=False)
    fig_ppl = rpt.ppl_figure(long, corpora, out / "ppl.png")
    return fig_ppl, rpt.rank_figure(ranks, none, n_layers, out / "ranks.png"), text


def write_empty(stage: Stage) -> None:
    """``compare.methods: []``: empty outputs, nothing loaded."""
    paths, out = stage.paths, stage.paths.plots / "compare"
    for d in (paths.compare_dir, out, paths.compare_report.parent):
        d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns=["method", "n_drop", "dropped"]).to_csv(paths.compare_dir / "compare.csv", index=False)
    pd.DataFrame(columns=cmp.PAIRED_COLUMNS).to_csv(paths.compare_dir / "paired.csv", index=False)
    write_json(paths.compare_dir / "compare.json", {"rows": [], "note": "compare.methods is empty"})
    pd.DataFrame(columns=["method", "n_drop", "corpus", "ppl"]).to_csv(out / "ppl.csv", index=False)
    pd.DataFrame(columns=["method", "layer", "rank"]).to_csv(out / "ranks.csv", index=False)
    paths.compare_report.write_text("# Layer-pruning methods compared\n\nNothing compared: compare.methods is empty.\n")
    for name in ("ppl.png", "ranks.png"):
        (out / name).unlink(missing_ok=True)


@dataclass(frozen=True)
class Compared:
    """Every (method, k, repair) row, the paired differences, each method's sets and the run's bookkeeping."""

    table: pd.DataFrame  # one row per method, k and repair, the full model's first
    pairs: pd.DataFrame  # PAIRED_COLUMNS: each set against select's, with bootstrap intervals
    methods: list[cs.MethodSets]
    corpora: list[str]
    n_layers: int
    n_new: int  # variants evaluated by this run (the others came from the checkpoints)
    seconds: float
    stores: tuple[PartStore, PartStore]  # the baselines' scores and the evaluations


def compute(stage: Stage) -> Compared:
    """Score the methods, evaluate each distinct set (and its repair) once, pair every set with select's."""
    cfg, paths, params = stage.params.compare, stage.paths, stage.params
    model, tokenizer, _ = load_stage_model(paths.model, params, params.evaluate.dtype)
    n_layers = num_layers(model)
    ks = cfg.resolve_n_drops(n_layers)
    score_store, store = work_stores(stage, model)
    start = time.perf_counter()
    methods = [method_sets(params, paths, m, model, ks, score_store) for m in cfg.methods]
    sets = cmp.distinct_sets(methods)
    print(f"{len(methods)} methods x k in {ks}: {len(sets) - 1} distinct layer sets to evaluate")
    items = {t: load_task(t, cfg.n_items, np.random.default_rng(params.base.seed)) for t in params.evaluate.tasks}
    n_new = evaluate_sets(params, paths, model, tokenizer, sets, items, store)
    if "linear" in cfg.repairs:
        n_new += evaluate_repaired_sets(params, paths, model, tokenizer, sets, items, store)
    table = cmp.rows(methods, store, model, cfg.repairs)
    corpora = list(params.prepare_data.eval_corpora)
    tokens = read_windows(paths.eval_windows(corpora[0])).shape[1] - 1  # predicted tokens per window
    rng = stream(params.base.seed, "paired_bootstrap")
    pairs = cmp.paired(table, store, corpora, tokens, cfg.bootstrap, rng)
    seconds = time.perf_counter() - start
    return Compared(table, pairs, methods, corpora, n_layers, n_new, seconds, (score_store, store))


def write(stage: Stage, out: Compared):
    """The tables, report and figures (``write_outputs``); then the parts of other models, windows, options
    or code go. Returns the two figures and the report's text."""
    figures = write_outputs(stage, out.table, out.pairs, out.methods, out.corpora, out.n_layers)
    keep = {s.directory for s in out.stores}
    for stale in out.stores[1].directory.parent.glob("*"):
        if stale not in keep:
            shutil.rmtree(stale, ignore_errors=True)
    return figures


def log(tracker: Tracker, paths: Paths, out: Compared, fig_ppl, fig_ranks) -> None:
    """The figures, the report on the parent run, and one child run per cell (the full model's too:
    MLflow's table compares them)."""
    for fig, name in ((fig_ppl, "ppl_vs_layers_removed.png"), (fig_ranks, "layer_ranks.png")):
        tracker.log_figure(fig, name)
        close(fig)
    tracker.log_parent_artifact(paths.compare_report)
    tracker.log_parent_artifact(paths.plots / "compare" / "ppl.png")
    for row in out.table.to_dict("records"):
        metrics = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not pd.isna(v)}
        cell = {"method": row["method"], "repair": row["repair"], "n_drop": row["n_drop"], "ratio": row["ratio"]}
        metrics = {k: v for k, v in metrics.items() if k not in cell}
        name = f"{row['method']} -{row['n_drop']}" + ("" if row["repair"] == "none" else f" +{row['repair']}")
        name = "full model" if row["n_drop"] == 0 else name
        tracker.log_child_run(name, cell | {"dropped_layers": row["dropped"]}, metrics)
    tracker.log_metrics({"seconds": out.seconds, "variants_evaluated": out.n_new})


@flow(name="compare", log_prints=True)
def compare(root: str = ".") -> dict:
    stage = Stage.open("compare", root)
    with stage.tracking() as tracker:
        if not stage.params.compare.methods:
            write_empty(stage)
            print("compare.methods is empty: nothing compared")
            return {"rows": 0}
        out = compute(stage)
        fig_ppl, fig_ranks, text = write(stage, out)
        log(tracker, stage.paths, out, fig_ppl, fig_ranks)
    print(text)
    return {"rows": len(out.table), "evaluated": out.n_new}


if __name__ == "__main__":
    stage_main(compare)
