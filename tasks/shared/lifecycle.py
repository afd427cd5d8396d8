"""The one shape of every stage flow: read -> compute -> write -> log, inside the stage's MLflow run.

A stage is a :class:`Recipe` (torchtune's recipe interface, cut to what a DVC stage needs) and its Prefect
flow is ``return run_stage(Recipe(), root)``. ``read`` loads the declared inputs, ``compute`` does the work
(the heavy part, in its Prefect tasks), ``write`` persists every output DVC declares and returns the
figures it drew, ``log`` sends metrics, tags and files to MLflow and never writes a file. All four run
inside the stage's MLflow run, so a stage that fails shows as FAILED there and the run's duration is the
stage's. ``tests/test_layout.py`` holds every flow to this shape.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

from tasks.shared.plots import close
from tasks.shared.runtime import Stage
from tasks.shared.tracking import Tracker

Inputs = TypeVar("Inputs")
Result = TypeVar("Result")
Figures = dict[str, Any]  # MLflow artifact name -> the matplotlib figure ``write`` drew and saved


@runtime_checkable
class Recipe(Protocol[Inputs, Result]):
    """One stage's four steps; ``name`` is the stage's name in ``dvc.yaml``, ``params.yaml`` and ``flows/``
    (``evaluate@full``: a ``foreach`` item of ``evaluate``)."""

    name: str

    def read(self, stage: Stage) -> Inputs:
        """The stage's inputs: artifacts of earlier stages (typed readers) and the model it needs."""
        ...

    def compute(self, stage: Stage, inputs: Inputs) -> Result:
        """The work, on plain values; returns the stage's result (a dataclass)."""
        ...

    def write(self, stage: Stage, result: Result) -> Figures:
        """Every output the stage declares in ``dvc.yaml`` (artifacts, metrics, plot data and images); returns
        the figures it saved, for ``log``."""
        ...

    def log(self, tracker: Tracker, stage: Stage, result: Result) -> None:
        """Metrics, tags and the written files to MLflow (``run_stage`` logs the figures); writes nothing."""
        ...

    def summary(self, result: Result) -> str:
        """The one line printed when the stage is done."""
        ...

    def returns(self, result: Result) -> dict[str, Any]:
        """What the flow returns (its Prefect result)."""
        ...


def run_stage(recipe: Recipe[Any, Any], root: str = ".") -> dict[str, Any]:
    """Run ``recipe`` in the project at ``root``: its four steps in order, then its one-line summary."""
    stage = Stage.open(recipe.name, root)
    with stage.tracking() as tracker:
        result = recipe.compute(stage, recipe.read(stage))
        figures = recipe.write(stage, result)
        recipe.log(tracker, stage, result)
        for artifact, figure in figures.items():
            tracker.log_figure(figure, artifact)
            close(figure)
    print(recipe.summary(result))
    return recipe.returns(result)
