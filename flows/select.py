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

from tasks.select import load_inputs, search, write_placeholder, write_selection
from tasks.shared.model import saved_layer_count
from tasks.shared.plots import close, fit_scatter
from tasks.shared.runtime import Stage, stage_main


@flow(name="select", log_prints=True)
def select(root: str = ".") -> dict:
    stage = Stage.open("select", root)
    params, paths = stage.params, stage.paths
    method = params.prune.method
    with stage.tracking() as tracker:
        tracker.log_params({"prune.method": method})
        out = paths.plots / "select"
        out.mkdir(parents=True, exist_ok=True)
        if method != "select" and "select" not in params.compare.methods:
            write_placeholder(paths, method)
            pd.DataFrame({"n_drop": [], "bits": [], "predicted": [], "calibration": []}).to_csv(
                out / "candidates.csv", index=False
            )
            print(
                f"prune.method is {method}: no subset search (set prune.method: select or list it in compare.methods)"
            )
            return {"method": method}
        n_layers = saved_layer_count(paths.model)
        compare_ks = params.compare.resolve_n_drops(n_layers) if "select" in params.compare.methods else []
        n_drops = params.select.resolve_n_drops(n_layers, params.prune.resolve_n_drop(n_layers), compare_ks)
        inputs = load_inputs(stage, n_layers)
        start = time.perf_counter()
        selection, info = search(stage, inputs, n_drops)
        seconds = time.perf_counter() - start
        frame = write_selection(selection, paths, info | {"seconds": seconds})
        verified = frame[frame["verified"]]
        verified.to_csv(out / "candidates.csv", index=False)
        if len(verified) and verified["predicted"].notna().any():  # the budgeted search predicts nothing
            fig = fit_scatter(
                verified["predicted"].to_numpy(),
                verified["calibration"].to_numpy(),
                verified["n_drop"].to_numpy(),
                f"select: {len(verified)} verified candidates (colour: layers dropped)",
                paths.select_dir / "predicted_vs_measured.png",
            )
            tracker.log_figure(fig, "select_predicted_vs_measured.png")
            close(fig)
        metrics: dict[str, float] = {"n_evaluations": selection.n_evaluations, "seconds": seconds}
        for k, c in selection.chosen.items():
            metrics |= {f"k{k}_predicted": c.predicted, f"k{k}_calibration": c.calibration}
            metrics |= {f"k{k}_validation": c.validation, f"k{k}_round": c.round}
            if k in selection.costs:
                metrics |= {f"k{k}_evaluations": selection.costs[k].evaluations}
                forwards = selection.costs[k].layer_token_forwards(info["tokens_per_evaluation"])
                metrics |= {f"k{k}_layer_token_forwards": forwards}
            rank = selection.from_source(k, "ranking")
            if rank is not None:
                metrics |= {f"k{k}_ranking_calibration": rank.calibration, f"k{k}_ranking_validation": rank.validation}
            line = f"k={k}: drop {c.dropped} ({'+'.join(c.sources)}, round {c.round}, by {selection.chosen_by[k]}): "
            line += f"predicted {c.predicted:.4f}, calibration {c.calibration:.4f}, validation {c.validation:.4f}"
            if rank is not None:
                line += f"; ranking drops {rank.dropped}: {rank.calibration:.4f} / {rank.validation:.4f}"
            print(line)
            note = selection.notes.get(k, {})
            if note.get("larger_budget_may_change"):
                print(f"k={k}: a larger select.budget may change this choice ({_why(note)})")
        tracker.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        tracker.set_tags({f"select_k{k}": ",".join(map(str, c.dropped)) for k, c in selection.chosen.items()})
        tracker.log_artifact(paths.select_json)
        tracker.log_artifact(paths.select_candidates)
        print(f"{selection.n_evaluations} LLM evaluations of {selection.budget} ({seconds:.1f} s)")
        return {
            "method": method,
            "chosen": {k: c.dropped for k, c in selection.chosen.items()},
            "n_evaluations": selection.n_evaluations,
        }


def _why(note: dict) -> str:
    reasons = ["the last swaps still improved"] if note.get("still_improving") else []
    if note.get("reduced"):
        reasons.append("the budget did not hold the lazy greedy pass")
    if note.get("close"):
        reasons.append(f"the runner-up is within {note['margin']:.4f} log-utility")
    return "; ".join(reasons)


if __name__ == "__main__":
    stage_main(select)
