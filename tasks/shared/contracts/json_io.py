"""The one strict JSON writer and reader of stage records, and the parsing helpers of the typed readers.

Non-finite floats are written as ``null`` (strict JSON) and read back as ``nan`` (or ``None`` where a value
may be absent).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from shapprune.config import ConfigError

T = TypeVar("T")


def strict(obj: Any) -> Any:
    """NaN / inf -> ``None``, numpy scalars -> Python, recursively (what strict JSON can hold)."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def write_json(path: Path, data: Any) -> Path:
    """Write pretty, strict JSON atomically (temp file + rename); non-finite floats become ``null``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(strict(data), indent=2, sort_keys=False, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> Any:
    """Read JSON, with a clear error naming what to rerun when it is missing or unreadable."""
    if not path.is_file():
        raise ConfigError(f"{path}: missing; run the stage that makes it first (`dvc repro`)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err}); delete it and rerun `dvc repro`") from None


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _opt(x: Any) -> float | None:
    """A number that may be absent (``null``: not measured, or not finite)."""
    return None if x is None else float(x)


def _optint(x: Any) -> int | None:
    return None if x is None else int(x)


def _sets(chosen: dict[str, Any]) -> dict[int, list[int]]:
    return {int(k): sorted(int(i) for i in (v["dropped"] if isinstance(v, dict) else v)) for k, v in chosen.items()}


def read_record(path: Path, parse: Callable[[Any], T], stage: str) -> T:
    """``parse`` of the JSON at ``path``; a missing key (a file written by an older version) names the rerun."""
    try:
        return parse(read_json(path))
    except KeyError as err:
        raise ConfigError(f"{path}: no {err} (written by an older version); rerun `dvc repro {stage}`") from None
