"""Resumable work: results appended to disk in chunks, so a killed run redoes only what is missing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def fingerprint(parts: Iterable[bytes | str | os.PathLike]) -> str:
    """SHA-256 over byte strings, strings and the *contents* of files (hex, 16 chars)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, os.PathLike):
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
        else:
            h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


class ChunkStore:
    """A folder of ``chunk_*.parquet`` files; a chunk is visible only once completely written."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def chunks(self) -> list[Path]:
        return sorted(self.directory.glob("chunk_*.parquet")) if self.directory.is_dir() else []

    def load(self) -> pd.DataFrame | None:
        """All complete chunks as one table (unreadable leftovers are ignored and removed)."""
        frames = []
        for path in self.chunks():
            try:
                frames.append(pq.read_table(path).to_pandas())
            except (pa.ArrowInvalid, OSError):
                path.unlink(missing_ok=True)
        return pd.concat(frames, ignore_index=True) if frames else None

    def append(self, rows: pd.DataFrame) -> Path:
        """Write one chunk atomically (temp file, fsync, rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        index = len(self.chunks())
        path = self.directory / f"chunk_{index:06d}.parquet"
        while path.exists():
            index += 1
            path = self.directory / f"chunk_{index:06d}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
        return path

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class PartStore:
    """A folder of finished parts of a stage, one JSON record each (``<name>.json``), written atomically.

    For work made of a few heterogeneous pieces (a perplexity per corpus, an accuracy per task): a part is
    visible only once completely written, so a killed run finds every finished part and none half-done.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"part name {name!r} must be a plain file name")
        return self.directory / f"{name}.json"

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json")) if self.directory.is_dir() else []

    def get(self, name: str) -> dict | None:
        """The record of a finished part, or None (an unreadable leftover is removed)."""
        path = self._path(name)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            path.unlink(missing_ok=True)
            return None

    def put(self, name: str, record: dict) -> Path:
        """Write one part atomically (temp file, fsync, rename); NaN and inf are kept."""
        path = self._path(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(record, allow_nan=True))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        return path

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
