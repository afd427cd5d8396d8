import numpy as np
import pytest

from shapprune.config import ConfigError
from tasks.shared.artifacts import (
    read_masks,
    read_repair_windows,
    read_table,
    read_windows,
    read_windows_and_source,
    write_masks,
    write_windows,
)


def test_masks_roundtrip_and_width_check(tmp_path):
    masks = np.random.default_rng(0).random((5, 7)) < 0.5
    masks[:, 0] = True
    path = write_masks(masks, tmp_path / "masks.parquet")
    table, back = read_masks(path, 7)
    assert np.array_equal(back, masks) and table["n_kept"].tolist() == masks.sum(1).tolist()
    with pytest.raises(ConfigError, match="masks have 7 layers but the model has 30; rerun sample_masks"):
        read_masks(path, 30)


def test_windows_roundtrip(tmp_path):
    w = np.arange(12, dtype=np.int64).reshape(3, 4)
    assert np.array_equal(read_windows(write_windows(w, tmp_path / "w.parquet", "x")), w)
    back, source = read_windows_and_source(write_windows(w, tmp_path / "mix.parquet", "wiki 0.5 + coqa 0.5"))
    assert np.array_equal(back, w) and source == "wiki 0.5 + coqa 0.5"


def test_missing_and_corrupt_parquet_give_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing; run the stage that makes it first"):
        read_table(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ConfigError, match="not a readable parquet file") as err:
        read_table(bad)
    assert len(str(err.value).splitlines()) == 1
    good = write_masks(np.ones((2, 3), bool), tmp_path / "m.parquet")
    good.write_bytes(good.read_bytes()[:-20])  # truncated
    with pytest.raises(ConfigError, match="not a readable parquet file"):
        read_table(good)


@pytest.mark.parametrize("windows", [None, np.zeros((0, 4), np.int64)], ids=["missing", "empty"])
def test_absent_repair_windows_name_both_fixes(tmp_path, windows):
    path = tmp_path / "repair.parquet"
    if windows is not None:
        write_windows(windows, path, "wiki")
    fix = r"set prepare_data.repair_windows > 0 and rerun `dvc repro prepare_data`, or set repair.method: none$"
    with pytest.raises(ConfigError, match=r"no repair windows for repair.method: linear; " + fix) as err:
        read_repair_windows(path, "repair.method: linear", "repair.method: none")
    assert len(str(err.value).splitlines()) == 1
    w = np.arange(8, dtype=np.int64).reshape(2, 4)
    back, text = read_repair_windows(write_windows(w, path, "wiki 0.5 + coqa 0.5"), "x", "y")
    assert np.array_equal(back, w) and text == "wiki 0.5 + coqa 0.5"
