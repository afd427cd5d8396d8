import numpy as np
import pytest

from shapprune.mask_splits import handle_nonfinite, stratified_split


def test_stratified_split_takes_a_share_of_every_group():
    groups = np.repeat([28, 25, 20], [10, 10, 3])
    is_val = stratified_split(groups, 0.2, np.random.default_rng(0))
    assert [int(is_val[groups == g].sum()) for g in (28, 25, 20)] == [2, 2, 1]
    assert not stratified_split(groups, 0.0, np.random.default_rng(0)).any()


def test_nonfinite_rows_stay_aligned():
    u = np.array([0.9, np.nan, 0.5, np.inf, 0.1])
    keep, vals = handle_nonfinite(u, "exclude")
    assert keep.tolist() == [True, False, True, False, True]
    assert vals[keep].tolist() == [0.9, 0.5, 0.1]
    keep, vals = handle_nonfinite(u, "clip")
    assert keep.all() and vals.tolist() == [0.9, 0.0, 0.5, 0.0, 0.1]
    with pytest.raises(ValueError, match="fit_surrogate.nonfinite"):
        handle_nonfinite(u, "drop")
