"""Stage ``prepare_data``: real text -> calibration, validation and held-out evaluation windows (parquet)."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from transformers import AutoConfig, AutoTokenizer

from shapprune.types import TokenWindows
from tasks.prepare_data import build_windows, repair_label
from tasks.shared.artifacts import write_windows
from tasks.shared.contracts import write_json
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


@dataclass(frozen=True)
class Tokenizer:
    """The saved model's tokenizer and its context length (None when its config names none)."""

    tokenizer: object
    context: int | None


@dataclass(frozen=True)
class Windows:
    """The calibration-source windows by split, the held-out windows by corpus role, and their record."""

    calib: dict[str, TokenWindows]  # calibration, validation, repair
    evals: dict[str, TokenWindows]  # one per prepare_data.eval_corpora role
    info: dict  # data/metrics/prepare_data.json


class PrepareData:
    """Tokenise the configured corpora into disjoint windows of ``prepare_data.seq_len`` tokens."""

    name = "prepare_data"

    def read(self, stage: Stage) -> Tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(stage.paths.model)
        context = getattr(AutoConfig.from_pretrained(stage.paths.model), "max_position_embeddings", None)
        return Tokenizer(tokenizer, context)

    def compute(self, stage: Stage, tok: Tokenizer) -> Windows:
        calib, evals, counts = build_windows(
            stage.params.prepare_data, tok.tokenizer, stage.params.base.seed, tok.context
        )
        info = counts | {f"windows_{k}": len(v) for k, v in (calib | evals).items()}
        return Windows(calib, evals, info)

    def write(self, stage: Stage, windows: Windows) -> Figures:
        """Every split as parquet (with its source) and the record."""
        cfg, paths = stage.params.prepare_data, stage.paths
        write_windows(windows.calib["calibration"], paths.calibration, cfg.calibration_source)
        sources = {"validation": cfg.calibration_source, "repair": repair_label(cfg)}
        for split, source in sources.items():
            if split in windows.calib:
                write_windows(windows.calib[split], paths.windows_dir / f"{split}.parquet", source)
        for role, role_windows in windows.evals.items():
            write_windows(role_windows, paths.eval_windows(role), cfg.eval_corpora[role])
        write_json(paths.metrics_file("prepare_data"), windows.info)
        return {}

    def log(self, tracker: Tracker, stage: Stage, windows: Windows) -> None:
        tracker.log_metrics(windows.info)

    def summary(self, windows: Windows) -> str:
        shapes = {k: v.shape for k, v in (windows.calib | windows.evals).items()}
        return f"windows: {shapes}"

    def returns(self, windows: Windows) -> dict:
        return windows.info


@flow(name="prepare_data", log_prints=True)
def prepare_data(root: str = ".") -> dict:
    return run_stage(PrepareData(), root)


if __name__ == "__main__":
    stage_main(prepare_data)
