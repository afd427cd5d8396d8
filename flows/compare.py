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
from prefect import flow

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
from tasks import compare_sets as cs
from tasks.compare_report import compare_markdown, layer_ranks, ppl_figure, ppl_long, rank_figure
from tasks.shared.artifacts import read_windows
from tasks.shared.contracts import write_json
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.model import load_stage_model
from tasks.shared.plots import close, note_figure
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


@dataclass(frozen=True)
class Model:
    """The full model every variant is cut from, and its tokenizer."""

    model: object
    tokenizer: object


@dataclass(frozen=True)
class Skipped:
    """``compare.methods: []``: nothing compared, empty outputs written."""


@dataclass(frozen=True)
class Compared:
    """Every (method, k, repair) row, the paired differences, each method's sets, the report and the run's
    bookkeeping."""

    table: pd.DataFrame  # one row per method, k and repair, the full model's first
    pairs: pd.DataFrame  # PAIRED_COLUMNS: each set against select's, with bootstrap intervals
    methods: list[cs.MethodSets]
    corpora: list[str]
    n_layers: int
    n_new: int  # variants evaluated by this run (the others came from the checkpoints)
    seconds: float
    stores: tuple[PartStore, PartStore]  # the baselines' scores and the evaluations
    n_windows: dict[str, int]  # held-out windows per corpus
    report: str  # reports/compare.md
    goal: list[str]  # select against the other methods (compare.json)
    notes: list[str]  # what was not measured (compare.json)


def write_outputs(stage: Stage, out: Compared) -> Figures:
    """CSV/JSON tables, markdown report, plot data and figures."""
    paths, cfg, table = stage.paths, stage.params.compare, out.table
    paths.compare_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(paths.compare_dir / "compare.csv", index=False)
    out.pairs.to_csv(paths.compare_dir / "paired.csv", index=False)
    paths.compare_report.parent.mkdir(parents=True, exist_ok=True)
    paths.compare_report.write_text(out.report)
    write_json(
        paths.compare_dir / "compare.json",
        {"corpora": out.corpora, "n_layers": out.n_layers, "n_windows": out.n_windows, "n_items": cfg.n_items,
         "goal": out.goal, "notes": out.notes, "rows": table.replace({np.nan: None}).to_dict("records"),
         "paired": out.pairs.replace({np.nan: None}).to_dict("records")},
    )  # fmt: skip
    plots = paths.plots / "compare"
    plots.mkdir(parents=True, exist_ok=True)
    long = ppl_long(table, out.corpora)
    long.to_csv(plots / "ppl.csv", index=False)
    ranks = layer_ranks(out.methods)
    ranks.to_csv(plots / "ranks.csv", index=False)
    fig_ppl = ppl_figure(long, out.corpora, plots / "ppl.png")
    fig_ranks = rank_figure(ranks, table[table.repair == "none"], out.n_layers, plots / "ranks.png")
    return {"ppl_vs_layers_removed.png": fig_ppl, "layer_ranks.png": fig_ranks}


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
    for name in ("ppl.png", "ranks.png"):  # declared outputs: a placeholder, so `dvc repro` goes on to the report
        close(note_figure("nothing compared: compare.methods is empty", out / name))


class Compare:
    """Score the methods, evaluate each distinct set (and its repair) once, pair every set with select's."""

    name = "compare"

    def read(self, stage: Stage) -> Model | None:
        """The full model at ``evaluate.dtype``; nothing when ``compare.methods`` is empty."""
        params = stage.params
        if not params.compare.methods:
            return None
        model, tokenizer, _ = load_stage_model(stage.paths.model, params, params.evaluate.dtype)
        return Model(model, tokenizer)

    def compute(self, stage: Stage, loaded: Model | None) -> Compared | Skipped:
        """The table, the pairs and the report's text (every variant measured or read back)."""
        if loaded is None:
            return Skipped()
        cfg, paths, params = stage.params.compare, stage.paths, stage.params
        model, tokenizer = loaded.model, loaded.tokenizer
        n_layers = num_layers(model)
        ks = cfg.resolve_n_drops(n_layers)
        score_store, store = work_stores(stage, model)
        start = time.perf_counter()
        methods = [cmp.score_method(params, paths, m, model, ks, score_store) for m in cfg.methods]
        sets = cmp.distinct_sets(methods)
        print(f"{len(methods)} methods x k in {ks}: {len(sets) - 1} distinct layer sets to evaluate")
        items = {t: load_task(t, cfg.n_items, np.random.default_rng(params.base.seed)) for t in params.evaluate.tasks}
        n_new = cmp.evaluate_variants(params, paths, model, tokenizer, sets, items, store)
        if "linear" in cfg.repairs:
            n_new += cmp.evaluate_repaired_variants(params, paths, model, tokenizer, sets, items, store)
        table = cmp.rows(methods, store, model, cfg.repairs)
        corpora = list(params.prepare_data.eval_corpora)
        tokens = read_windows(paths.eval_windows(corpora[0])).shape[1] - 1  # predicted tokens per window
        rng = stream(params.base.seed, "paired_bootstrap")
        pairs = cmp.paired(table, store, corpora, tokens, cfg.bootstrap, rng)
        seconds = time.perf_counter() - start
        n_windows = {r: len(read_windows(paths.eval_windows(r))[: cfg.eval_windows]) for r in corpora}
        name, how = describe_weights(params.base.model)
        notes = [f"- {n}" for m in methods for n in m.notes]
        text, goal = compare_markdown(
            table, pairs, corpora, f"{name} ({how})", cfg.n_items, n_windows, cfg.bootstrap, cfg.repairs, notes
        )
        stores = (score_store, store)
        return Compared(table, pairs, methods, corpora, n_layers, n_new, seconds, stores, n_windows, text, goal, notes)

    def write(self, stage: Stage, out: Compared | Skipped) -> Figures:
        """The tables, report and figures; then the parts of other models, windows, options or code go. Empty
        outputs when nothing was compared."""
        if isinstance(out, Skipped):
            write_empty(stage)
            return {}
        figures = write_outputs(stage, out)
        keep = {s.directory for s in out.stores}
        for stale in out.stores[1].directory.parent.glob("*"):
            if stale not in keep:
                shutil.rmtree(stale, ignore_errors=True)
        return figures

    def log(self, tracker: Tracker, stage: Stage, out: Compared | Skipped) -> None:
        """The report on the parent run, and one child run per cell (the full model's too: MLflow's table
        compares them)."""
        if isinstance(out, Skipped):
            return
        paths = stage.paths
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

    def summary(self, out: Compared | Skipped) -> str:
        return "compare.methods is empty: nothing compared" if isinstance(out, Skipped) else out.report

    def returns(self, out: Compared | Skipped) -> dict:
        return {"rows": 0} if isinstance(out, Skipped) else {"rows": len(out.table), "evaluated": out.n_new}


@flow(name="compare", log_prints=True)
def compare(root: str = ".") -> dict:
    return run_stage(Compare(), root)


if __name__ == "__main__":
    stage_main(compare)
