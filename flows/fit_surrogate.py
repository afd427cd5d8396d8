"""Stage ``fit_surrogate``: the paper's MLP surrogate (mask -> utility), with a held-out fidelity report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shapprune.splits import handle_nonfinite, stratified_split
from shapprune.surrogate import MLPSurrogate, SurrogateSpec, TrainSpec, fidelity, fit_mlp, mlp_specs
from tasks.shared.artifacts import read_masks
from tasks.shared.contracts import write_json
from tasks.shared.guards import fault_point
from tasks.shared.model import saved_layer_count
from tasks.shared.paths import Paths
from tasks.shared.plots import close, fit_scatter
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


@dataclass(frozen=True)
class Fit:
    """The fitted surrogate, its predictions on every finite mask and the fidelity record."""

    model: MLPSurrogate
    history: list[float]
    predictions: pd.DataFrame  # bits, n_kept, measured, predicted, split (train | validation)
    info: dict  # data/metrics/fit_surrogate.json


@task(name="fit-mlp", cache_policy=NO_CACHE)
def fit_task(masks, utilities, spec: SurrogateSpec, train: TrainSpec, seed: int):
    # crash tests: SHAPPRUNE_FAULT=fit_surrogate:epoch:N kills the stage after epoch N
    return fit_mlp(masks, utilities, spec, train, seed, on_epoch=lambda n: fault_point("fit_surrogate:epoch", n))


def compute(stage: Stage) -> Fit:
    """Split the finite scored masks (stratified by kept layers), train on one part, measure on both."""
    cfg, paths = stage.params.fit_surrogate, stage.paths
    scores, masks = read_masks(paths.scores, saved_layer_count(paths.model))
    keep, utilities = handle_nonfinite(scores["utility"].to_numpy(float), cfg.nonfinite)
    masks, utilities, groups = masks[keep], utilities[keep], scores["n_kept"].to_numpy()[keep]
    is_val = stratified_split(groups, cfg.val_fraction, np.random.default_rng([stage.params.base.seed, 2]))
    spec, train = mlp_specs(masks.shape[1], cfg.mlp_options())
    model, history = fit_task(masks[~is_val], utilities[~is_val], spec, train, stage.params.base.seed)
    pred = model.predict(masks)
    by_stratum = {
        int(g): float(np.sqrt(np.mean((pred[is_val & (groups == g)] - utilities[is_val & (groups == g)]) ** 2)))
        for g in np.unique(groups[is_val])
    }
    info = {
        "n_train": int((~is_val).sum()),
        "n_validation": int(is_val.sum()),
        "n_excluded_nonfinite": int((~keep).sum()),
        "train": fidelity(pred[~is_val], utilities[~is_val]),
        "validation": fidelity(pred[is_val], utilities[is_val]),
        "validation_rmse_by_kept_layers": by_stratum,
        "final_train_loss": history[-1],
    }
    predictions = pd.DataFrame(
        {
            "bits": scores["bits"][keep].to_numpy(),
            "n_kept": groups,
            "measured": utilities,
            "predicted": pred,
            "split": np.where(is_val, "validation", "train"),
        }
    )
    return Fit(model, history, predictions, info)


def write(stage: Stage, fit: Fit):
    """The surrogate (safetensors + JSON), its metrics, plot data and the held-out scatter; returns the figure."""
    paths = stage.paths
    meta = {"utility": stage.params.score_masks.utility, "model": stage.params.base.model}
    fit.model.save(paths.surrogate, meta | {"n_train": fit.info["n_train"]})
    out = paths.plots / "fit_surrogate"
    out.mkdir(parents=True, exist_ok=True)
    fit.predictions.to_csv(out / "predictions.csv", index=False)
    pd.DataFrame({"epoch": np.arange(1, len(fit.history) + 1), "loss": fit.history}).to_csv(
        out / "loss.csv", index=False
    )
    write_json(paths.metrics_file("fit_surrogate"), fit.info)
    val = fit.predictions[fit.predictions["split"] == "validation"]
    held = fit.info["validation"]
    title = f"held-out R²={held['r2']:.3f}  Spearman={held['spearman']:.3f}"
    return fit_scatter(
        val["predicted"].to_numpy(), val["measured"].to_numpy(), val["n_kept"].to_numpy(), title, out / "fit.png"
    )


def log(tracker: Tracker, paths: Paths, fit: Fit, fig) -> None:
    """Fidelity, the loss curve (every 10th epoch and the last), the scatter and the surrogate in MLflow."""
    tracker.log_metrics(
        {f"train_{k}": v for k, v in fit.info["train"].items()}
        | {f"val_{k}": v for k, v in fit.info["validation"].items()}
    )
    for epoch, loss in enumerate(fit.history):
        if epoch % 10 == 0 or epoch == len(fit.history) - 1:
            tracker.log_metrics({"train_loss": loss}, step=epoch)
    tracker.log_figure(fig, "surrogate_fit.png")
    close(fig)
    tracker.log_artifact(paths.surrogate, "surrogate")


@flow(name="fit_surrogate", log_prints=True)
def fit_surrogate(root: str = ".") -> dict:
    stage = Stage.open("fit_surrogate", root)
    with stage.tracking() as tracker:
        fit = compute(stage)
        fig = write(stage, fit)
        log(tracker, stage.paths, fit, fig)
    held = fit.info["validation"]
    print(
        f"surrogate held-out R² {held['r2']:.3f}, Spearman {held['spearman']:.3f}, "
        f"RMSE {held['rmse']:.4f} ({fit.info['n_validation']} masks)"
    )
    return fit.info


if __name__ == "__main__":
    stage_main(fit_surrogate)
