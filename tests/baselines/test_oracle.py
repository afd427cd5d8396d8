"""Oracle: equals brute force over every subset, the cap raises a clear error, identity layer chosen."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from shapprune.baselines import layer_scores
from shapprune.baselines.oracle import check_budget, select
from shapprune.scoring import masked_nll


def test_equals_brute_force(tiny_model, windows):
    for k in (1, 2):
        best = min(
            itertools.combinations(range(6), k),
            key=lambda d: masked_nll(tiny_model, windows, ~np.isin(np.arange(6), d), batch_size=3).mean,
        )
        assert select(tiny_model, windows, k, batch_size=3) == list(best)


def test_scores_sets_and_cap(identity_model, identity_text):
    result = layer_scores("oracle", identity_model, identity_text, [1, 2, 3], max_subsets=15)
    assert result.chosen[1] == [2] and 2 in result.chosen[2]
    assert result.info["skipped_n_drops"] == [3]  # C(6, 3) = 20 > 15
    assert np.argmin(result.scores) in result.chosen[2] and result.scores.shape == (6,)
    with pytest.raises(ValueError, match=r"C\(30, 3\) = 4,060 subsets exceed the cap of 1,000.*oracle_max_subsets"):
        check_budget(30, 3, 1000)
    with pytest.raises(ValueError, match="exceed the cap"):
        layer_scores("oracle", identity_model, identity_text, [3], max_subsets=10)
