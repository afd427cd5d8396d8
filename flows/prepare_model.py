"""Stage ``prepare_model``: resolve ``base.model`` and save a clean safetensors copy under data/model."""

from __future__ import annotations

from prefect import flow

from tasks.prepare_model import materialise_model
from tasks.shared.contracts import write_json
from tasks.shared.runtime import Stage, stage_main


@flow(name="prepare_model", log_prints=True)
def prepare_model(root: str = ".") -> dict:
    stage = Stage.open("prepare_model", root)
    with stage.tracking() as tracker:
        info = materialise_model(stage.params.base.model, stage.paths.model, stage.params.base.revision)
        info["source"] = stage.params.base.model
        write_json(stage.paths.metrics_file("prepare_model"), info)
        tracker.log_metrics({"n_layers": info["n_layers"], "parameters": info["parameters"]})
        print(f"saved {info['model_type']} with {info['n_layers']} layers, {info['parameters']:,} parameters")
        return info


if __name__ == "__main__":
    stage_main(prepare_model)
