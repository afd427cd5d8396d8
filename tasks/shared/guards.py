"""Process-level guards for stages: one run of a stage at a time, and fault injection for crash tests."""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shapprune.config import ConfigError

FAULT_ENV = "SHAPPRUNE_FAULT"


@contextmanager
def stage_lock(root: Path, stage: str) -> Iterator[None]:
    """Hold ``data/.locks/<stage>.lock``; a second concurrent run of the same stage stops with a clear error."""
    path = root / "data" / ".locks" / f"{stage}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"stage {stage} is already running in {root} (lock {path}); wait for it to finish, "
                "or use `dvc exp run --temp` for a parallel experiment"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fault_point(name: str, count: int) -> None:
    """Crash-test hook: ``SHAPPRUNE_FAULT=<name>:<n>`` SIGKILLs this process when ``count`` reaches n."""
    spec = os.environ.get(FAULT_ENV, "")
    if spec and spec.rpartition(":")[0] == name and count >= int(spec.rpartition(":")[2]):
        os.kill(os.getpid(), signal.SIGKILL)
