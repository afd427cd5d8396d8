"""Stage ``prepare_model``: resolve ``base.model`` and save a clean safetensors copy under data/model."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from tasks.prepare_model import materialise_model
from tasks.shared.contracts import write_json
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker


@dataclass(frozen=True)
class Materialised:
    """The saved model's record (``data/metrics/prepare_model.json``): type, layers, parameters, source."""

    info: dict


class PrepareModel:
    """Load ``base.model`` (hub id, directory or GGUF) and save it as safetensors in ``data/model``."""

    name = "prepare_model"

    def read(self, stage: Stage) -> None:
        """Nothing: the model comes from ``base.model``, not from an earlier stage."""
        return None

    def compute(self, stage: Stage, inputs: None) -> Materialised:
        """The model loaded and saved in ``data/model`` (its task writes the folder as it saves it)."""
        info = materialise_model(stage.params.base.model, stage.paths.model, stage.params.base.revision)
        info["source"] = stage.params.base.model
        return Materialised(info)

    def write(self, stage: Stage, saved: Materialised) -> Figures:
        """The record; the folder itself is written by ``compute``."""
        write_json(stage.paths.metrics_file("prepare_model"), saved.info)
        return {}

    def log(self, tracker: Tracker, stage: Stage, saved: Materialised) -> None:
        tracker.log_metrics({"n_layers": saved.info["n_layers"], "parameters": saved.info["parameters"]})

    def summary(self, saved: Materialised) -> str:
        info = saved.info
        return f"saved {info['model_type']} with {info['n_layers']} layers, {info['parameters']:,} parameters"

    def returns(self, saved: Materialised) -> dict:
        return saved.info


@flow(name="prepare_model", log_prints=True)
def prepare_model(root: str = ".") -> dict:
    return run_stage(PrepareModel(), root)


if __name__ == "__main__":
    stage_main(prepare_model)
