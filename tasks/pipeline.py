"""Prefect task of the ``pipeline`` flow: one DVC stage of a running ``dvc repro`` as one task run."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

_STAGE_LINE = re.compile(r"^(?:Running stage '([^']+)':|Stage '([^']+)' didn't change, skipping)")


def stage_event(line: str) -> str | None:
    """The stage a line of ``dvc repro`` output starts or skips, else None."""
    match = _STAGE_LINE.match(line)
    return (match.group(1) or match.group(2)) if match else None


@dataclass
class DvcOutput:
    """The lines of one running ``dvc repro``, read by one stage task after another."""

    proc: subprocess.Popen
    lines: Iterator[str]
    tail: list[str] = field(default_factory=list)
    next_stage: str | None = None  # the stage whose first line was read but not yet handed to its task
    skipped: bool = False

    def read(self) -> Iterator[str]:
        """Lines up to (not including) the next stage's first line; sets ``next_stage`` (None at the end)."""
        self.next_stage = None
        for raw in self.lines:
            line = raw.rstrip()
            self.tail = (self.tail + [line])[-200:]
            stage = stage_event(line)
            if stage:
                self.next_stage, self.skipped = stage, line.endswith("skipping")
                return
            yield line


@task(name="dvc-stage", cache_policy=NO_CACHE)
def stage_task(stage: str, skipped: bool, output: DvcOutput) -> str:
    """One DVC stage as a task run of the pipeline's flow run: its state, duration and output lines.

    The task lasts while ``dvc repro`` prints that stage's output (a stage DVC skips lasts an instant);
    the stage's own flow run (and its MLflow run, which names it) holds the details.
    """
    logger = get_run_logger()
    logger.info("Stage '%s' didn't change, skipping" if skipped else "Running stage '%s'", stage)
    for line in output.read():
        if line.strip():
            logger.info(line)
    if output.next_stage is None and output.proc.wait() != 0:  # dvc stopped in this stage
        tail = "\n".join(output.tail[-40:])
        raise RuntimeError(f"stage {stage} failed (dvc exit {output.proc.returncode}):\n{tail}")
    return "unchanged" if skipped else "ran"
