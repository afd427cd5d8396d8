"""The registry: every method, the common result, and agreement with params.yaml's choices."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.baselines import BASELINES, METHODS, SET_VALUED, from_values, layer_scores
from shapprune.config import ConfigError
from tests.conftest import project_params


@pytest.mark.slow  # several seconds: the full tier runs it
@pytest.mark.parametrize("method", sorted(BASELINES))
def test_every_method_gives_the_common_result(method, tiny_model, windows):
    opts = {"batch_size": 3, "protect_first": 1, "protect_last": 1, "max_subsets": 100}
    a = layer_scores(method, tiny_model, windows, [1, 2], np.random.default_rng(0), **opts)
    b = layer_scores(method, tiny_model, windows, [1, 2], np.random.default_rng(0), **opts)
    assert a.method == method and a.scores.shape == (6,) and a.set_valued == (method in SET_VALUED)
    assert sorted(a.chosen) == [1, 2] and all(len(a.drop(k)) == k for k in (1, 2))
    assert sorted(a.ranking().tolist()) == list(range(6))
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.chosen == b.chosen


def test_unknown_method_and_params():
    with pytest.raises(ValueError, match="unknown pruning method 'shortgpt'"):
        layer_scores("shortgpt", None, None)
    assert project_params({"prune": {"method": "sleb"}}).prune.method == "sleb"
    with pytest.raises(ConfigError, match="prune.method: unknown method 'shortgpt'; choose from shapley, select, "):
        project_params({"prune": {"method": "shortgpt"}})
    assert set(METHODS) == {"shapley", "select", *BASELINES}


def test_from_values_ranks_a_precomputed_table():
    r = from_values("shapley", np.array([0.3, 0.1, 0.2]))
    assert r.ranking().tolist() == [1, 2, 0] and r.drop(2) == [1, 2]
