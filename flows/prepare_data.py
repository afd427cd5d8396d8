"""Stage ``prepare_data``: real text -> calibration, validation and held-out evaluation windows (parquet)."""

from __future__ import annotations

from prefect import flow
from transformers import AutoConfig, AutoTokenizer

from tasks.prepare_data import build_windows, repair_label
from tasks.shared.artifacts import write_windows
from tasks.shared.contracts import write_json
from tasks.shared.runtime import Stage, stage_main


@flow(name="prepare_data", log_prints=True)
def prepare_data(root: str = ".") -> dict:
    stage = Stage.open("prepare_data", root)
    cfg = stage.params.prepare_data
    with stage.tracking() as tracker:
        tokenizer = AutoTokenizer.from_pretrained(stage.paths.model)
        context = getattr(AutoConfig.from_pretrained(stage.paths.model), "max_position_embeddings", None)
        calib, evals, counts = build_windows(cfg, tokenizer, stage.params.base.seed, context)
        write_windows(calib["calibration"], stage.paths.calibration, cfg.calibration_source)
        sources = {"validation": cfg.calibration_source, "repair": repair_label(cfg)}
        for split, source in sources.items():
            if split in calib:
                write_windows(calib[split], stage.paths.windows_dir / f"{split}.parquet", source)
        for role, windows in evals.items():
            write_windows(windows, stage.paths.eval_windows(role), cfg.eval_corpora[role])
        info = counts | {f"windows_{k}": len(v) for k, v in (calib | evals).items()}
        write_json(stage.paths.metrics_file("prepare_data"), info)
        tracker.log_metrics(info)
        print("windows:", {k: v.shape for k, v in (calib | evals).items()})
        return info


if __name__ == "__main__":
    stage_main(prepare_data)
