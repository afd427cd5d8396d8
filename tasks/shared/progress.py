"""Progress bars in the Prefect UI (a flow run's Artifacts tab), best effort: they never fail the work.

Without Prefect installed (a benchmark on a bare GPU machine) the bars only print.
"""

from __future__ import annotations

import logging
import time
from uuid import UUID

try:
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
except ImportError:  # printed progress only
    create_progress_artifact = update_progress_artifact = None

log = logging.getLogger(__name__)


class PrefectProgress:
    """One progress artifact, created at 0-100 % and updated in place.

    ``key`` (lowercase letters, digits and dashes) lists it on the UI's Artifacts page too; every run
    adds a new version under that key. Outside a flow run, or when the API is unreachable, it does nothing.
    """

    def __init__(self, key: str, description: str, percent: float = 0.0) -> None:
        self.key, self.percent = key, float(percent)
        self.id: UUID | None = None
        if create_progress_artifact is None:
            return
        try:
            self.id = create_progress_artifact(self.percent, key=key, description=description)
        except Exception as err:  # no flow run context, no API: the bar is a convenience
            log.debug("no progress artifact %s: %s", key, err)

    def update(self, percent: float, description: str | None = None) -> None:
        self.percent = min(100.0, max(0.0, float(percent)))
        if self.id is None:
            return
        try:
            update_progress_artifact(self.id, self.percent, description=description)
        except Exception as err:
            log.debug("progress artifact %s not updated: %s", self.key, err)


class StepProgress:
    """``done/total`` steps printed with rate and ETA (mirrored in the flow run's log) and as a Prefect bar."""

    def __init__(
        self, key: str, description: str, total: int, already: int = 0, unit: str = "parts", clock=time.perf_counter
    ) -> None:
        self.total, self.already, self.unit, self.clock = max(1, total), already, unit, clock
        self.start = clock()
        self.bar = PrefectProgress(key, description, 100 * already / self.total)

    def line(self, done: int, label: str = "") -> str:
        """``evaluated 3/10 parts (task-piqa)  0.05 parts/s  ETA 140s``."""
        elapsed = self.clock() - self.start
        rate = (done - self.already) / elapsed if elapsed > 0 else float("nan")
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        where = f" ({label})" if label else ""
        return f"{done}/{self.total} {self.unit}{where}  {rate:.3f} {self.unit}/s  ETA {eta:.0f}s"

    def step(self, done: int, label: str = "") -> str:
        text = self.line(done, label)
        print(text, flush=True)
        self.bar.update(100 * done / self.total, text)
        return text
