"""Stage ``fit_surrogate``: the paper's MLP surrogate (mask -> utility), with a held-out fidelity report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import flow

from shapprune.mask_splits import handle_nonfinite, stratified_split
from shapprune.streams import stream
from shapprune.surrogate import MLPSurrogate, fidelity, mlp_specs
from tasks.fit_surrogate import fit_task
from tasks.shared.artifacts import read_masks
from tasks.shared.contracts import write_json
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.model import saved_layer_count
from tasks.shared.plots import fit_scatter
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


@dataclass(frozen=True)
class Scored:
    """The scored masks the surrogate learns from: finite ones only, with their stratum (kept layers)."""

    bits: pd.Series  # the masks as bit strings, for the predictions table
    masks: np.ndarray  # bool[n, L]
    utilities: np.ndarray  # float[n]
    groups: np.ndarray  # int[n]: kept layers
    n_excluded: int  # masks left out by fit_surrogate.nonfinite


@dataclass(frozen=True)
class SurrogateFit:
    """The fitted surrogate, its predictions on every finite mask and the fidelity record."""

    model: MLPSurrogate
    history: list[float]
    predictions: pd.DataFrame  # bits, n_kept, measured, predicted, split (train | validation)
    info: dict  # data/metrics/fit_surrogate.json


class FitSurrogate:
    """Split the finite scored masks (stratified by kept layers), train on one part, measure on both."""

    name = "fit_surrogate"

    def read(self, stage: Stage) -> Scored:
        scores, masks = read_masks(stage.paths.scores, saved_layer_count(stage.paths.model))
        keep, utilities = handle_nonfinite(scores["utility"].to_numpy(float), stage.params.fit_surrogate.nonfinite)
        groups = scores["n_kept"].to_numpy()[keep]
        return Scored(scores["bits"][keep], masks[keep], utilities[keep], groups, int((~keep).sum()))

    def compute(self, stage: Stage, scored: Scored) -> SurrogateFit:
        cfg, seed = stage.params.fit_surrogate, stage.params.base.seed
        masks, utilities, groups = scored.masks, scored.utilities, scored.groups
        is_val = stratified_split(groups, cfg.val_fraction, stream(seed, "surrogate_split"))
        spec, train = mlp_specs(masks.shape[1], cfg.mlp_options())
        model, history = fit_task(masks[~is_val], utilities[~is_val], spec, train, seed)
        pred = model.predict(masks)
        by_stratum = {
            int(g): float(np.sqrt(np.mean((pred[is_val & (groups == g)] - utilities[is_val & (groups == g)]) ** 2)))
            for g in np.unique(groups[is_val])
        }
        info = {
            "n_train": int((~is_val).sum()),
            "n_validation": int(is_val.sum()),
            "n_excluded_nonfinite": scored.n_excluded,
            "train": fidelity(pred[~is_val], utilities[~is_val]),
            "validation": fidelity(pred[is_val], utilities[is_val]),
            "validation_rmse_by_kept_layers": by_stratum,
            "final_train_loss": history[-1],
        }
        predictions = pd.DataFrame(
            {
                "bits": scored.bits.to_numpy(),
                "n_kept": groups,
                "measured": utilities,
                "predicted": pred,
                "split": np.where(is_val, "validation", "train"),
            }
        )
        return SurrogateFit(model, history, predictions, info)

    def write(self, stage: Stage, fit: SurrogateFit) -> Figures:
        """The surrogate (safetensors + JSON), its metrics, plot data and the held-out scatter."""
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
        predicted, measured, kept = (val[c].to_numpy() for c in ("predicted", "measured", "n_kept"))
        return {"surrogate_fit.png": fit_scatter(predicted, measured, kept, title, out / "fit.png")}

    def log(self, tracker: Tracker, stage: Stage, fit: SurrogateFit) -> None:
        """Fidelity, the loss curve (every 10th epoch and the last) and the surrogate in MLflow."""
        tracker.log_metrics(
            {f"train_{k}": v for k, v in fit.info["train"].items()}
            | {f"val_{k}": v for k, v in fit.info["validation"].items()}
        )
        for epoch, loss in enumerate(fit.history):
            if epoch % 10 == 0 or epoch == len(fit.history) - 1:
                tracker.log_metrics({"train_loss": loss}, step=epoch)
        tracker.log_artifact(stage.paths.surrogate, "surrogate")

    def summary(self, fit: SurrogateFit) -> str:
        held = fit.info["validation"]
        return (
            f"surrogate held-out R² {held['r2']:.3f}, Spearman {held['spearman']:.3f}, "
            f"RMSE {held['rmse']:.4f} ({fit.info['n_validation']} masks)"
        )

    def returns(self, fit: SurrogateFit) -> dict:
        return fit.info


@flow(name="fit_surrogate", log_prints=True)
def fit_surrogate(root: str = ".") -> dict:
    return run_stage(FitSurrogate(), root)


if __name__ == "__main__":
    stage_main(fit_surrogate)
