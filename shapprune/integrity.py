"""Checks that model files are readable, so that a damaged file is one clear error, not a deep traceback.

A truncated or damaged ``*.safetensors`` file, a ``config.json`` that is not JSON, a missing shard, or a
GGUF file that is empty, not GGUF, or cut short: each raises :class:`CorruptModelError` naming the file,
what is wrong and how to get a good copy. Only the file structure is checked (safetensors: the header and
that the data exactly covers the file; GGUF: the header and that every tensor lies within the file); a
flipped bit inside the tensor data is not detectable without a checksum.

Light on purpose (no torch / transformers at import time): stage entry points import it to recognise the
error.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

__all__ = ["CorruptModelError", "check_gguf", "check_model_dir", "check_safetensors"]

SAVE_AGAIN = "delete the directory and save the model again"


class CorruptModelError(ValueError):
    """A model file exists but cannot be read; ``str()`` is one line: ``<path> is corrupt (<reason>); <fix>``."""

    def __init__(self, path: str | Path, reason: str, fix: str = SAVE_AGAIN) -> None:
        self.path, self.reason, self.fix = Path(path), reason, fix
        super().__init__(f"{self.path} is corrupt ({reason}); {fix}")

    def __reduce__(self):  # rebuilt from its fields when it crosses a process boundary (Dask workers)
        return type(self), (self.path, self.reason, self.fix)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_safetensors(path: str | Path, fix: str = SAVE_AGAIN) -> None:
    """Raise :class:`CorruptModelError` unless ``path`` has a valid header whose tensors exactly cover the file.

    Reads the header only (the file is memory-mapped), so it costs milliseconds even for gigabytes.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.stat().st_size == 0:
        raise CorruptModelError(path, "empty file", fix)
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as err:
        raise CorruptModelError(path, _first_line(err), fix) from None


def check_model_dir(directory: str | Path, fix: str = SAVE_AGAIN) -> None:
    """Check a ``save_pretrained`` directory: ``config.json`` parses, every listed shard exists and is readable."""
    directory = Path(directory)
    for meta in (directory / "config.json", directory / "model.safetensors.index.json"):
        if meta.is_file():
            try:
                json.loads(meta.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise CorruptModelError(meta, f"not valid JSON: {_first_line(err)}", fix) from None
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        for shard in sorted(set(json.loads(index.read_text()).get("weight_map", {}).values())):
            if not (directory / shard).is_file():
                raise CorruptModelError(directory / shard, f"missing; listed in {index.name}", fix)
    weights = sorted(directory.glob("*.safetensors"))
    if not weights and not any(directory.glob("*.bin")):
        raise CorruptModelError(directory, "no weights file (*.safetensors) next to config.json", fix)
    for path in weights:
        check_safetensors(path, fix)


def check_gguf(path: str | Path, fix: str) -> None:
    """Raise :class:`CorruptModelError` unless ``path`` parses as GGUF with every tensor inside the file.

    Parses the whole header and metadata (about 3 s for the default model's vocabulary), so it is run only
    after loading a GGUF file has failed, to tell a damaged file from any other problem.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise CorruptModelError(path, "empty file", fix)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise CorruptModelError(path, f"not a GGUF file: it starts with {magic!r}, not b'GGUF'", fix)
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, struct.error, IndexError, OSError) as err:
        raise CorruptModelError(path, f"truncated or damaged GGUF: {_first_line(err)}", fix) from None
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise CorruptModelError(path, f"truncated: tensors need {end} bytes, the file has {size}", fix)
