import warnings

import numpy as np
import pytest

from shapprune.estimators.base import EstimateResult
from shapprune.estimators.uncertainty import BoundaryWarning, check_boundary, contribution_table


def _result(values, stderr):
    return EstimateResult(np.array(values), np.array(stderr), 10, "test", n_evaluations=10)


def test_table_has_intervals_ranks_and_dropped_layers():
    table = contribution_table(_result([0.3, 0.1, 0.2], [0.01, 0.02, 0.03]), n_drop=1, layers=[15, 16, 17])
    assert table["layer"].tolist() == [15, 16, 17]
    assert table["rank"].tolist() == [3, 1, 2] and table["dropped"].tolist() == [False, True, False]
    np.testing.assert_allclose(table["ci_high"] - table["ci_low"], 2 * 1.96 * np.array([0.01, 0.02, 0.03]))


def test_warns_only_when_the_boundary_is_not_separated():
    with pytest.warns(BoundaryWarning, match="layer 2 and kept layer 0"):
        choice = check_boundary(_result([0.30, 0.10, 0.29], [0.01, 0.01, 0.01]), n_drop=2)
    assert choice.dropped == [1, 2] and not choice.separated
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_boundary(_result([0.30, 0.10, 0.20], [0.01, 0.01, 0.01]), n_drop=1).separated
