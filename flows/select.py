"""Stage ``select``: choose the layers to drop by searching subsets, not by ranking contributions.

For every ``k`` in ``select.n_drops`` (null: prune's k and those ``compare`` reports) candidates come from
the contribution ranking, beam search and greedy removal on the surrogate, contiguous blocks, and the best
masks already scored; the most promising are verified on the LLM (calibration and validation windows, ``select.budget``
evaluations), the surrogate is refitted on what was verified, and the search repeats for
``select.rounds`` rounds. The verified mask with the best validation utility is chosen.
``select.strategy: budgeted`` instead searches on the LLM alone (block scan, lazy greedy removal, swap moves; see
``shapprune/select/budgeted.py``) with every evaluation inside ``select.budget`` and reports its cost per k. Writes
``data/select/select.json`` (the choice per k) and ``candidates.parquet`` (every candidate). When neither
``prune.method`` nor ``compare.methods`` asks for select it writes a placeholder and loads nothing.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from prefect import flow

from shapprune.config import Params
from shapprune.select import Selection
from tasks.select import load_inputs, search, write_placeholder, write_selection
from tasks.shared.model import saved_layer_count
from tasks.shared.paths import Paths
from tasks.shared.plots import close, fit_scatter
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


def wanted(params: Params) -> bool:
    """Whether anything asks for select: ``prune.method`` or ``compare.methods``."""
    return params.prune.method == "select" or "select" in params.compare.methods


def write_skipped(paths: Paths, method: str) -> None:
    """The placeholder outputs when nothing asks for select."""
    write_placeholder(paths, method)
    pd.DataFrame({"n_drop": [], "bits": [], "predicted": [], "calibration": []}).to_csv(
        paths.plots / "select" / "candidates.csv", index=False
    )


def compute(stage: Stage) -> tuple[Selection, dict]:
    """The search for every k select is asked for; returns the selection and its record (with seconds)."""
    params, paths = stage.params, stage.paths
    n_layers = saved_layer_count(paths.model)
    compare_ks = params.compare.resolve_n_drops(n_layers) if "select" in params.compare.methods else []
    n_drops = params.select.resolve_n_drops(n_layers, params.prune.resolve_n_drop(n_layers), compare_ks)
    inputs = load_inputs(stage, n_layers)
    start = time.perf_counter()
    selection, info = search(stage, inputs, n_drops)
    return selection, info | {"seconds": time.perf_counter() - start}


def write(paths: Paths, selection: Selection, info: dict):
    """select.json, candidates.parquet, the verified candidates' plot data and their predicted-vs-measured
    scatter; returns the figure (None when nothing was predicted: the budgeted search)."""
    frame = write_selection(selection, paths, info)
    verified = frame[frame["verified"]]
    verified.to_csv(paths.plots / "select" / "candidates.csv", index=False)
    if not (len(verified) and verified["predicted"].notna().any()):
        return None
    return fit_scatter(
        verified["predicted"].to_numpy(),
        verified["calibration"].to_numpy(),
        verified["n_drop"].to_numpy(),
        f"select: {len(verified)} verified candidates (colour: layers dropped)",
        paths.select_dir / "predicted_vs_measured.png",
    )


def metrics(selection: Selection, info: dict) -> dict[str, float]:
    """Per k: the choice's predicted, calibration and validation utility, its round and cost, and the ranking's."""
    out: dict[str, float] = {"n_evaluations": selection.n_evaluations, "seconds": info["seconds"]}
    if selection.n_screen_evaluations:
        out |= {"n_screen_evaluations": selection.n_screen_evaluations}
        out |= {"equivalent_evaluations": info["equivalent_evaluations"]}
    out |= {key: info[key] for key in ("fit_runs", "fit_passes", "fit_layer_token_forwards") if key in info}
    for k, c in selection.chosen.items():
        out |= {f"k{k}_predicted": c.predicted, f"k{k}_calibration": c.calibration}
        out |= {f"k{k}_validation": c.validation, f"k{k}_round": c.round}
        if k in selection.costs:
            out |= {f"k{k}_evaluations": selection.costs[k].evaluations}
            if selection.costs[k].screen_evaluations:
                out |= {f"k{k}_screen_evaluations": selection.costs[k].screen_evaluations}
            forwards = selection.costs[k].layer_token_forwards(info["tokens_per_evaluation"])
            out |= {f"k{k}_layer_token_forwards": forwards}
        rank = selection.from_source(k, "ranking")
        if rank is not None:
            out |= {f"k{k}_ranking_calibration": rank.calibration, f"k{k}_ranking_validation": rank.validation}
    return out


def log(tracker: Tracker, paths: Paths, selection: Selection, info: dict, fig) -> None:
    """The scatter, the finite metrics, one tag per k (its dropped layers) and the two tables in MLflow."""
    if fig is not None:
        tracker.log_figure(fig, "select_predicted_vs_measured.png")
        close(fig)
    tracker.log_metrics({k: float(v) for k, v in metrics(selection, info).items() if np.isfinite(v)})
    tracker.set_tags({f"select_k{k}": ",".join(map(str, c.dropped)) for k, c in selection.chosen.items()})
    tracker.log_artifact(paths.select_json)
    tracker.log_artifact(paths.select_candidates)


def summary_lines(selection: Selection, info: dict) -> list[str]:
    """One line per k (the choice, its sources and utilities, the ranking's), a budget warning where one
    applies, and the evaluations spent."""
    lines = []
    for k, c in selection.chosen.items():
        rank = selection.from_source(k, "ranking")
        line = f"k={k}: drop {c.dropped} ({'+'.join(c.sources)}, round {c.round}, by {selection.chosen_by[k]}): "
        line += f"predicted {c.predicted:.4f}, calibration {c.calibration:.4f}, validation {c.validation:.4f}"
        if rank is not None:
            line += f"; ranking drops {rank.dropped}: {rank.calibration:.4f} / {rank.validation:.4f}"
        lines.append(line)
        note = selection.notes.get(k, {})
        if note.get("larger_budget_may_change"):
            lines.append(f"k={k}: a larger select.budget may change this choice ({_why(note)})")
    return [*lines, f"{selection.n_evaluations} LLM evaluations of {selection.budget} ({info['seconds']:.1f} s)"]


@flow(name="select", log_prints=True)
def select(root: str = ".") -> dict:
    stage = Stage.open("select", root)
    paths, method = stage.paths, stage.params.prune.method
    with stage.tracking() as tracker:
        tracker.log_params({"prune.method": method})
        (paths.plots / "select").mkdir(parents=True, exist_ok=True)
        if not wanted(stage.params):
            write_skipped(paths, method)
            print(f"prune.method is {method}: no subset search (set prune.method: select or add it to compare.methods)")
            return {"method": method}
        selection, info = compute(stage)
        fig = write(paths, selection, info)
        log(tracker, paths, selection, info, fig)
    print("\n".join(summary_lines(selection, info)))
    chosen = {k: c.dropped for k, c in selection.chosen.items()}
    return {"method": method, "chosen": chosen, "n_evaluations": selection.n_evaluations}


def _why(note: dict) -> str:
    reasons = ["the last swaps still improved"] if note.get("still_improving") else []
    if note.get("reduced"):
        reasons.append("the budget did not hold the lazy greedy pass")
    if note.get("close"):
        reasons.append(f"the runner-up is within {note['margin']:.4f} log-utility")
    return "; ".join(reasons)


if __name__ == "__main__":
    stage_main(select)
