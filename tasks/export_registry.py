"""The export stage's registry step: the shipped model as a ``transformers``-flavour MLflow model, one version a run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tasks.shared.mlflow_runs import MlflowTracker
from tasks.shared.tracking import Tracker

REQUIREMENTS = ["torch", "transformers", "safetensors", "accelerate"]  # what loading it back needs


@dataclass(frozen=True)
class Registered:
    """Where the registered version lives: ``models:/<name>/<version>`` loads it."""

    name: str
    version: str
    model_uri: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register_model(
    tracker: Tracker, model: object, tokenizer: object, name: str, tags: Mapping[str, str], card: str
) -> Registered | None:
    """Log ``model`` (a transformers model with its tokenizer) to the stage's run and register a new version.

    Loading it back needs no code of this project: ``mlflow.transformers.load_model(uri)`` or
    ``mlflow.pyfunc.load_model(uri).predict([...])``. A null tracker registers nothing (returns None).
    """
    if not isinstance(tracker, MlflowTracker):
        return None
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from huggingface_hub import ModelCard
    from mlflow.models import infer_signature

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracker.client.tracking_uri)  # the fluent API logs models; point it at our store
    try:
        signature = infer_signature(["Once upon a time"], ["text"], params={"max_new_tokens": 64})
        info = mlflow.transformers.log_model(
            {"model": model, "tokenizer": tokenizer},
            name="model",
            task="text-generation",
            run_id=tracker.run_id,
            registered_model_name=name,
            pip_requirements=REQUIREMENTS,  # inferring them imports optional packages (torchvision) that are absent
            signature=signature,
            model_card=ModelCard(card),  # ours; the default would ask the hub for one
            await_registration_for=60,
        )
    finally:
        mlflow.set_tracking_uri(previous)
    version = str(info.registered_model_version)
    client = tracker.client
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    client.set_registered_model_tag(name, "source", "shapprune")
    return Registered(name, version, info.model_uri)
