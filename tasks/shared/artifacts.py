"""Open-format artifact I/O (parquet, JSON) with checks that turn bad artifacts into clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shapprune.config import ConfigError
from shapprune.surrogate import MLPSurrogate
from shapprune.types import Mask, TokenWindows
from tasks.shared.contracts import SurrogateRecord


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ConfigError(f"{path}: missing; run the stage that makes it first (`dvc repro`)")
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as err:
        raise ConfigError(f"{path}: not a readable parquet file ({err}); delete it and rerun `dvc repro`") from None


def _write_parquet(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
    tmp.replace(path)
    return path


def write_windows(windows: TokenWindows, path: Path, source: str) -> Path:
    """Token windows ``int64[n, T]`` as one list column per row, with their source corpus."""
    df = pd.DataFrame({"window": np.arange(len(windows)), "source": source, "input_ids": list(windows)})
    return _write_parquet(df, path)


def read_windows(path: Path) -> TokenWindows:
    """Token windows ``int64[n, T]``."""
    return read_windows_and_source(path)[0]


def read_windows_and_source(path: Path) -> tuple[TokenWindows, str]:
    """Token windows ``int64[n, T]`` and the source corpus (or mix) :func:`write_windows` recorded for them."""
    return _windows_and_source(_read_parquet(path))


def _windows_and_source(df: pd.DataFrame) -> tuple[TokenWindows, str]:
    windows = np.stack([np.asarray(x, dtype=np.int64) for x in df["input_ids"]])  # raises on no windows
    return windows, str(df["source"].iloc[0])


def read_repair_windows(path: Path, needed_by: str, instead: str) -> tuple[TokenWindows, str]:
    """The repair windows ``int64[n, T]`` and their text, or one error naming both fixes.

    ``needed_by`` is the setting that asks for them (``select.repair: linear``), ``instead`` the setting
    that does without them (``select.repair: none``).
    """
    df = _read_parquet(path) if path.is_file() else None
    if df is not None and len(df):
        return _windows_and_source(df)
    raise ConfigError(
        f"{path}: no repair windows for {needed_by}; set prepare_data.repair_windows > 0 and rerun "
        f"`dvc repro prepare_data`, or set {instead}"
    )


def mask_bits(masks: Mask) -> list[str]:
    """``bool[n, L]`` -> ``["1101...", ...]`` (bit i = layer i kept)."""
    return ["".join("1" if b else "0" for b in row) for row in masks]


def bits_to_masks(bits: pd.Series) -> Mask:
    """Inverse of :func:`mask_bits`."""
    return np.array([[c == "1" for c in s] for s in bits], dtype=bool).reshape(len(bits), -1)


def write_masks(masks: Mask, path: Path) -> Path:
    """Masks as parquet: ``mask_id``, ``n_kept``, ``bits``."""
    df = pd.DataFrame({"mask_id": np.arange(len(masks)), "n_kept": masks.sum(axis=1), "bits": mask_bits(masks)})
    return _write_parquet(df, path)


def read_masks(path: Path, n_layers: int | None = None) -> tuple[pd.DataFrame, Mask]:
    """Mask table and ``bool[n, L]``; errors when the width differs from the model's layer count."""
    df = _read_parquet(path)
    masks = bits_to_masks(df["bits"])
    check_width(masks, n_layers, path)
    return df, masks


def check_width(masks: Mask, n_layers: int | None, path: Path) -> None:
    """Raise when masks do not have one bit per model layer."""
    if n_layers is not None and masks.shape[1] != n_layers:
        raise ConfigError(
            f"{path}: masks have {masks.shape[1]} layers but the model has {n_layers}; "
            "rerun sample_masks for this model (`dvc repro sample_masks`)"
        )


def write_table(df: pd.DataFrame, path: Path) -> Path:
    """Any table as parquet (atomic)."""
    return _write_parquet(df, path)


def read_table(path: Path) -> pd.DataFrame:
    """Any parquet table, with a clear error when missing or corrupt."""
    return _read_parquet(path)


def load_surrogate(directory: Path, model: str) -> MLPSurrogate:
    """The surrogate saved by ``fit_surrogate``; refuses one that was trained for another model."""
    trained_for = SurrogateRecord.read(directory).model
    if trained_for != model:
        raise ConfigError(
            f"{directory}: surrogate was trained for {trained_for}, not {model}; rerun `dvc repro fit_surrogate`"
        )
    return MLPSurrogate.load(directory)
