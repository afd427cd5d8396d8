"""Stage ``fit_surrogate``: the paper's MLP surrogate (mask -> utility), with a held-out fidelity report."""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shapprune.splits import handle_nonfinite, stratified_split
from shapprune.surrogate import SurrogateSpec, TrainSpec, fidelity, fit_mlp, mlp_specs
from tasks.shared.artifacts import read_masks
from tasks.shared.contracts import write_json
from tasks.shared.guards import fault_point
from tasks.shared.model import saved_layer_count
from tasks.shared.plots import close, fit_scatter
from tasks.shared.runtime import Stage, stage_main


@task(name="fit-mlp", cache_policy=NO_CACHE)
def fit_task(masks, utilities, spec: SurrogateSpec, train: TrainSpec, seed: int):
    # crash tests: SHAPPRUNE_FAULT=fit_surrogate:epoch:N kills the stage after epoch N
    return fit_mlp(masks, utilities, spec, train, seed, on_epoch=lambda n: fault_point("fit_surrogate:epoch", n))


@flow(name="fit_surrogate", log_prints=True)
def fit_surrogate(root: str = ".") -> dict:
    stage = Stage.open("fit_surrogate", root)
    cfg, paths = stage.params.fit_surrogate, stage.paths
    with stage.tracking() as tracker:
        scores, masks = read_masks(paths.scores, saved_layer_count(paths.model))
        keep, utilities = handle_nonfinite(scores["utility"].to_numpy(float), cfg.nonfinite)
        masks, utilities, groups = masks[keep], utilities[keep], scores["n_kept"].to_numpy()[keep]
        is_val = stratified_split(groups, cfg.val_fraction, np.random.default_rng([stage.params.base.seed, 2]))
        spec, train = mlp_specs(masks.shape[1], cfg.mlp_options())
        model, history = fit_task(masks[~is_val], utilities[~is_val], spec, train, stage.params.base.seed)
        pred = model.predict(masks)
        fid_train = fidelity(pred[~is_val], utilities[~is_val])
        fid_val = fidelity(pred[is_val], utilities[is_val])
        by_stratum = {
            int(g): float(np.sqrt(np.mean((pred[is_val & (groups == g)] - utilities[is_val & (groups == g)]) ** 2)))
            for g in np.unique(groups[is_val])
        }
        model.save(
            paths.surrogate,
            {
                "utility": stage.params.score_masks.utility,
                "model": stage.params.base.model,
                "n_train": int((~is_val).sum()),
            },
        )
        table = pd.DataFrame(
            {
                "bits": scores["bits"][keep].to_numpy(),
                "n_kept": groups,
                "measured": utilities,
                "predicted": pred,
                "split": np.where(is_val, "validation", "train"),
            }
        )
        paths.plots.joinpath("fit_surrogate").mkdir(parents=True, exist_ok=True)
        table.to_csv(paths.plots / "fit_surrogate" / "predictions.csv", index=False)
        pd.DataFrame({"epoch": np.arange(1, len(history) + 1), "loss": history}).to_csv(
            paths.plots / "fit_surrogate" / "loss.csv", index=False
        )
        info = {
            "n_train": int((~is_val).sum()),
            "n_validation": int(is_val.sum()),
            "n_excluded_nonfinite": int((~keep).sum()),
            "train": fid_train,
            "validation": fid_val,
            "validation_rmse_by_kept_layers": by_stratum,
            "final_train_loss": history[-1],
        }
        write_json(paths.metrics_file("fit_surrogate"), info)
        tracker.log_metrics(
            {f"train_{k}": v for k, v in fid_train.items()} | {f"val_{k}": v for k, v in fid_val.items()}
        )
        for epoch, loss in enumerate(history):
            if epoch % 10 == 0 or epoch == len(history) - 1:
                tracker.log_metrics({"train_loss": loss}, step=epoch)
        fig = fit_scatter(
            pred[is_val],
            utilities[is_val],
            groups[is_val],
            f"held-out R²={fid_val['r2']:.3f}  Spearman={fid_val['spearman']:.3f}",
            paths.plots / "fit_surrogate" / "fit.png",
        )
        tracker.log_figure(fig, "surrogate_fit.png")
        close(fig)
        tracker.log_artifact(paths.surrogate, "surrogate")
        print(
            f"surrogate held-out R² {fid_val['r2']:.3f}, Spearman {fid_val['spearman']:.3f}, "
            f"RMSE {fid_val['rmse']:.4f} ({info['n_validation']} masks)"
        )
        return info


if __name__ == "__main__":
    stage_main(fit_surrogate)
