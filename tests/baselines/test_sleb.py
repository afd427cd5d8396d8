"""SLEB: greedy steps equal brute-force argmins, nested sets, determinism, identity layer removed first."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.baselines import layer_scores
from shapprune.baselines.ppl import drop_one_nll
from shapprune.baselines.sleb import greedy_order, select
from shapprune.scoring import masked_nll


def test_each_step_is_the_brute_force_argmin(tiny_model, windows):
    order, step_nll, _ = greedy_order(tiny_model, windows, 3, batch_size=2)
    keep = np.ones(6, dtype=bool)
    for layer, nll in zip(order, step_nll):
        cands = np.flatnonzero(keep)
        costs = []
        for c in cands:
            m = keep.copy()
            m[c] = False
            costs.append(masked_nll(tiny_model, windows, m, batch_size=2).mean)
        assert layer == cands[int(np.argmin(costs))] and nll == min(costs)
        keep[layer] = False
    assert order[0] == int(np.argmin(drop_one_nll(tiny_model, windows, batch_size=2)))  # step 1 = ppl criterion


@pytest.mark.slow  # several seconds: the full tier runs it
def test_sets_are_nested_scores_follow_the_order_and_runs_repeat(tiny_model, windows):
    a = layer_scores("sleb", tiny_model, windows, [1, 2, 3], batch_size=2)
    b = layer_scores("sleb", tiny_model, windows, [1, 2, 3], batch_size=2)
    assert a.chosen == b.chosen and a.set_valued and sorted(a.order) == list(range(6))
    assert a.drop(1) == [a.order[0]] and set(a.drop(2)) < set(a.drop(3))
    np.testing.assert_array_equal(np.argsort(a.scores), a.order)


@pytest.mark.slow  # several seconds: the full tier runs it
def test_identity_layer_is_removed_first(identity_model, identity_text):
    order, _, _ = greedy_order(identity_model, identity_text, 2)
    assert order[0] == 2 and select(identity_model, identity_text, 1) == [2]
