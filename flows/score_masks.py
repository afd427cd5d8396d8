"""Stage ``score_masks``: the utility of every sampled mask on the real LLM (dropped layers are skipped)."""

from __future__ import annotations

import time

from prefect import flow

from shapprune.game import LayerGame
from shapprune.surgery import num_layers
from tasks.artifacts import read_masks, read_windows, write_table
from tasks.model import load_stage_model
from tasks.runtime import Stage, stage_main, write_json
from tasks.scoring import score_all


@flow(name="score_masks", log_prints=True)
def score_masks(root: str = ".") -> dict:
    stage = Stage.open("score_masks", root)
    cfg = stage.params.score_masks
    with stage.tracking() as tracker:
        model, _, device = load_stage_model(stage.paths.model, stage.params)
        _, masks = read_masks(stage.paths.masks, num_layers(model))
        windows = read_windows(stage.paths.calibration)
        start = time.perf_counter()
        game = LayerGame(model, windows, cfg.utility, cfg.batch_size)
        table = score_all(game, masks, cfg.utility)
        seconds = time.perf_counter() - start
        write_table(table, stage.paths.scores)
        n_bad = int((~table["finite"]).sum())
        info = {
            "n_masks": len(table),
            "n_nonfinite": n_bad,
            "full_ppl": game.full.perplexity,
            "full_nll_mean": game.full.mean,
            "calibration_tokens": game.full.tokens,
            "seconds": seconds,
            "seconds_per_mask": seconds / max(1, len(table)),
            "device": device,
            "utility_mean": float(table.loc[table["finite"], "utility"].mean()),
        }
        write_json(stage.paths.metrics_file("score_masks"), info)
        tracker.log_metrics({k: v for k, v in info.items() if isinstance(v, (int, float))})
        if n_bad:
            print(f"WARNING: {n_bad} masks have non-finite utility; kept in the table with finite=False")
        print(f"scored {len(table)} masks in {seconds:.0f}s; full-model calibration PPL {game.full.perplexity:.3f}")
        return info


if __name__ == "__main__":
    stage_main(score_masks)
