"""Progress bars in the Prefect UI (a flow run's Artifacts tab), best effort: they never fail the work."""

from __future__ import annotations

import logging
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

log = logging.getLogger(__name__)


class PrefectProgress:
    """One progress artifact, created at 0-100 % and updated in place.

    ``key`` (lowercase letters, digits and dashes) lists it on the UI's Artifacts page too; every run
    adds a new version under that key. Outside a flow run, or when the API is unreachable, it does nothing.
    """

    def __init__(self, key: str, description: str, percent: float = 0.0) -> None:
        self.key, self.percent = key, float(percent)
        self.id: UUID | None = None
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
