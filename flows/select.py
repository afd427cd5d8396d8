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
from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import flow

from shapprune.config import Params
from shapprune.select import Selection
from tasks.select import SearchInputs, load_inputs, search, write_placeholder, write_selection
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.model import saved_layer_count
from tasks.shared.paths import Paths
from tasks.shared.plots import fit_scatter
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


def wanted(params: Params) -> bool:
    """Whether anything asks for select: ``prune.method`` or ``compare.methods``."""
    return params.prune.method == "select" or "select" in params.compare.methods


@dataclass(frozen=True)
class Search:
    """What the search starts from and the numbers of layers it chooses for."""

    inputs: SearchInputs
    n_drops: list[int]


@dataclass(frozen=True)
class Skipped:
    """Nothing asks for select: nothing searched, a placeholder written."""

    method: str


@dataclass(frozen=True)
class Selected:
    """The selection for every k select was asked for and its record (with seconds)."""

    method: str
    selection: Selection
    info: dict


def write_skipped(paths: Paths, method: str) -> None:
    """The placeholder outputs when nothing asks for select."""
    write_placeholder(paths, method)
    pd.DataFrame({"n_drop": [], "bits": [], "predicted": [], "calibration": []}).to_csv(
        paths.plots / "select" / "candidates.csv", index=False
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


def _why(note: dict) -> str:
    reasons = ["the last swaps still improved"] if note.get("still_improving") else []
    if note.get("reduced"):
        reasons.append("the budget did not hold the lazy greedy pass")
    if note.get("close"):
        reasons.append(f"the runner-up is within {note['margin']:.4f} log-utility")
    return "; ".join(reasons)


class Select:
    """The subset search for every k select is asked for (a placeholder when nothing asks for it)."""

    name = "select"

    def read(self, stage: Stage) -> Search | None:
        """The scored masks, contributions and surrogate the search starts from; nothing when unwanted."""
        params = stage.params
        if not wanted(params):
            return None
        n_layers = saved_layer_count(stage.paths.model)
        compare_ks = params.compare.resolve_n_drops(n_layers) if "select" in params.compare.methods else []
        n_drops = params.select.resolve_n_drops(n_layers, params.prune.resolve_n_drop(n_layers), compare_ks)
        return Search(load_inputs(stage, n_layers), n_drops)

    def compute(self, stage: Stage, search_from: Search | None) -> Selected | Skipped:
        """The search (its task loads the model); the seconds it took join its record."""
        method = stage.params.prune.method
        if search_from is None:
            return Skipped(method)
        start = time.perf_counter()
        selection, info = search(stage, search_from.inputs, search_from.n_drops)
        return Selected(method, selection, info | {"seconds": time.perf_counter() - start})

    def write(self, stage: Stage, chosen: Selected | Skipped) -> Figures:
        """select.json, candidates.parquet, the verified candidates' plot data and their predicted-vs-measured
        scatter (none when nothing was predicted: the budgeted search), or the placeholders."""
        paths = stage.paths
        (paths.plots / "select").mkdir(parents=True, exist_ok=True)
        if isinstance(chosen, Skipped):
            write_skipped(paths, chosen.method)
            return {}
        frame = write_selection(chosen.selection, paths, chosen.info)
        verified = frame[frame["verified"]]
        verified.to_csv(paths.plots / "select" / "candidates.csv", index=False)
        if not (len(verified) and verified["predicted"].notna().any()):
            return {}
        fig = fit_scatter(
            verified["predicted"].to_numpy(),
            verified["calibration"].to_numpy(),
            verified["n_drop"].to_numpy(),
            f"select: {len(verified)} verified candidates (colour: layers dropped)",
            paths.select_dir / "predicted_vs_measured.png",
        )
        return {"select_predicted_vs_measured.png": fig}

    def log(self, tracker: Tracker, stage: Stage, chosen: Selected | Skipped) -> None:
        """The method; for a search, the finite metrics, one tag per k (its dropped layers) and the two tables."""
        tracker.log_params({"prune.method": chosen.method})
        if isinstance(chosen, Skipped):
            return
        selection = chosen.selection
        tracker.log_metrics({k: float(v) for k, v in metrics(selection, chosen.info).items() if np.isfinite(v)})
        tracker.set_tags({f"select_k{k}": ",".join(map(str, c.dropped)) for k, c in selection.chosen.items()})
        tracker.log_artifact(stage.paths.select_json)
        tracker.log_artifact(stage.paths.select_candidates)

    def summary(self, chosen: Selected | Skipped) -> str:
        if isinstance(chosen, Skipped):
            method = chosen.method
            return f"prune.method is {method}: no subset search (set prune.method: select or add it to compare.methods)"
        return "\n".join(summary_lines(chosen.selection, chosen.info))

    def returns(self, chosen: Selected | Skipped) -> dict:
        if isinstance(chosen, Skipped):
            return {"method": chosen.method}
        selection = chosen.selection
        return {
            "method": chosen.method,
            "chosen": {k: c.dropped for k, c in selection.chosen.items()},
            "n_evaluations": selection.n_evaluations,
        }


@flow(name="select", log_prints=True)
def select(root: str = ".") -> dict:
    return run_stage(Select(), root)


if __name__ == "__main__":
    stage_main(select)
