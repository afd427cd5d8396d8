"""Stage ``report``: metrics.json for ``dvc metrics``, plot data for ``dvc plots`` and a markdown summary."""

from __future__ import annotations

import pandas as pd
from prefect import flow

from tasks.plots import close, ppl_bars
from tasks.runtime import Stage, read_json, stage_main, write_json
from tasks.select import report_section
from tasks.tracking import numeric_leaves


def summary_markdown(full: dict, pruned: dict, pruning: dict, surrogate: dict, scoring: dict) -> str:
    """The one-screen summary: what was dropped and what it cost."""
    lines = [
        "# shapprune report",
        "",
        f"Dropped layers ({pruning['method']}): **{pruning['dropped_layers']}** "
        f"({pruning['n_dropped']} of {pruning['n_layers_before']}); parameters "
        f"{pruning['parameters_after']:,} / {pruning['parameters_before']:,} "
        f"({pruning['parameters_after'] / pruning['parameters_before']:.1%}).",
        (
            f"Boundary separation: {pruning['boundary_z']:.2f} standard errors "
            f"({'resolved' if pruning['boundary_separated'] else 'NOT resolved: more samples would help'})."
            if pruning.get("boundary_z") is not None
            else "Boundary separation: n/a (a deterministic criterion has no standard errors)."
        ),
        "",
        f"Masks scored on the LLM: {scoring['n_masks']} ({scoring['n_nonfinite']} non-finite), "
        f"{scoring['seconds_per_mask']:.2f} s/mask on {scoring['device']}; full-model calibration PPL "
        f"{scoring['full_ppl']:.3f}.",
        f"Surrogate held-out fit: R² {surrogate['validation']['r2']:.3f}, Spearman "
        f"{surrogate['validation']['spearman']:.3f} on {surrogate['n_validation']} masks.",
        "",
        "| model | layers | "
        + " | ".join(f"PPL {k}" for k in full["ppl"])
        + " | mean acc | mean acc_norm | tokens/s |",
        "|---|---|" + "---|" * (len(full["ppl"]) + 3),
    ]
    for name, m in (("full", full), ("pruned", pruned)):
        lines.append(
            f"| {name} | {m['n_layers']} | "
            + " | ".join(f"{m['ppl'][k]:.2f}" for k in full["ppl"])
            + f" | {m['mean_acc']:.3f} | {m['mean_acc_norm']:.3f} | {m['tokens_per_s']:.0f} |"
        )
    lines += [
        "",
        "| task | full acc | pruned acc | full acc_norm | pruned acc_norm | items |",
        "|---|---|---|---|---|---|",
    ]
    for task, f in full["zero_shot"].items():
        p = pruned["zero_shot"].get(task, {})
        lines.append(
            f"| {task} | {f['acc']:.3f} ± {f['acc_stderr']:.3f} | {p.get('acc', float('nan')):.3f} ± "
            f"{p.get('acc_stderr', float('nan')):.3f} | {f['acc_norm']:.3f} | {p.get('acc_norm', float('nan')):.3f} "
            f"| {f['n']} |"
        )
    return "\n".join(lines) + "\n"


@flow(name="report", log_prints=True)
def report(root: str = ".") -> dict:
    stage = Stage.open("report", root)
    paths = stage.paths
    full, pruned = read_json(paths.eval_metrics("full")), read_json(paths.eval_metrics("pruned"))
    pruning = read_json(paths.pruned / "pruning.json")
    surrogate = read_json(paths.metrics_file("fit_surrogate"))
    scoring = read_json(paths.metrics_file("score_masks"))
    selection = read_json(paths.select_json) if paths.select_json.is_file() else {}
    baseline = read_json(paths.layer_scores_json) if paths.layer_scores_json.is_file() else None
    select_text, select_metrics = report_section(selection, baseline)  # empty unless prune.method is select
    compared = read_json(paths.compare_dir / "compare.json") if (paths.compare_dir / "compare.json").is_file() else {}
    if compared.get("rows"):  # the methods table of the compare stage, as a section of the summary
        lines = paths.compare_report.read_text().splitlines()
        select_text += "\n" + "\n".join("#" + line if line.startswith("#") else line for line in lines) + "\n"
    with stage.tracking() as tracker:
        metrics = {
            "n_dropped": pruning["n_dropped"],
            "dropped_layers": pruning["dropped_layers"],
            "full": {"ppl": full["ppl"], "mean_acc": full["mean_acc"], "mean_acc_norm": full["mean_acc_norm"]},
            "pruned": {"ppl": pruned["ppl"], "mean_acc": pruned["mean_acc"], "mean_acc_norm": pruned["mean_acc_norm"]},
            "ppl_ratio": {k: pruned["ppl"][k] / full["ppl"][k] for k in full["ppl"]},
            "surrogate": {"val_r2": surrogate["validation"]["r2"], "val_spearman": surrogate["validation"]["spearman"]},
            "scoring": {"n_masks": scoring["n_masks"], "seconds_per_mask": scoring["seconds_per_mask"]},
            "parameters_kept": pruning["parameters_after"] / pruning["parameters_before"],
        }
        if select_metrics:
            metrics["select"] = select_metrics
        write_json(paths.metrics, metrics)
        out = paths.plots / "report"
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            [
                {"corpus": k, "model": n, "bar": f"{k} ({n})", "ppl": m["ppl"][k]}
                for n, m in (("full", full), ("pruned", pruned))
                for k in m["ppl"]
            ]
        ).to_csv(out / "ppl.csv", index=False)
        pd.DataFrame(
            [
                {"task": t, "model": n, "acc": r["acc"], "acc_norm": r["acc_norm"]}
                for n, m in (("full", full), ("pruned", pruned))
                for t, r in m["zero_shot"].items()
            ]
        ).to_csv(out / "zero_shot.csv", index=False)
        text = summary_markdown(full, pruned, pruning, surrogate, scoring) + (f"\n{select_text}" if select_text else "")
        paths.report.parent.mkdir(parents=True, exist_ok=True)
        paths.report.write_text(text)
        flat = {f"pruned_ppl_{k}": v for k, v in pruned["ppl"].items()} | {
            f"full_ppl_{k}": v for k, v in full["ppl"].items()
        }
        flat |= {
            "pruned_mean_acc": pruned["mean_acc"],
            "full_mean_acc": full["mean_acc"],
            "surrogate_val_r2": metrics["surrogate"]["val_r2"],
            "surrogate_val_spearman": metrics["surrogate"]["val_spearman"],
            "n_dropped": pruning["n_dropped"],
            "n_masks_scored": scoring["n_masks"],
        }
        flat |= select_metrics
        tracker.log_metrics(flat)
        summary = {k: v for k, v in numeric_leaves(metrics).items() if k.replace(".", "_") not in flat}
        tracker.log_parent_metrics(flat | summary)  # all of metrics.json on the pipeline's parent run
        tracker.log_artifact(paths.report)
        for path in (paths.report, paths.metrics):
            tracker.log_parent_artifact(path)
        fig = ppl_bars({"full": full["ppl"], "pruned": pruned["ppl"]}, "held-out perplexity")
        tracker.log_figure(fig, "perplexity.png")
        close(fig)
        print(text)
        return metrics


if __name__ == "__main__":
    stage_main(report)
