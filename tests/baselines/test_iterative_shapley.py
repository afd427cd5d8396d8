"""Iterative Shapley: identity layers get exactly zero contribution; nested sets; budget per round; deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.baselines import layer_scores
from tests.baselines.conftest import make_identity, own_text
from tests.conftest import tiny_llama


@pytest.mark.slow  # several seconds: the full tier runs it
def test_identity_layers_are_removed_first_within_budget():
    model = make_identity(tiny_llama(seed=0), [1, 4])
    text = own_text(model)
    runs = [
        layer_scores("iterative_shapley", model, text, [1, 2, 3], np.random.default_rng(3), batch_size=4,
                     estimator="permutation", budget_per_round=30)
        for _ in range(2)
    ]  # fmt: skip
    a, b = runs
    first = np.array(a.info["first_round"]["values"])
    assert first[1] == 0.0 and first[4] == 0.0  # an identity layer adds nothing to any coalition
    assert a.order[0] == int(np.lexsort((np.arange(6), first))[0])  # round 1 removes its lowest estimate
    assert set(a.drop(1)) < set(a.drop(2)) < set(a.drop(3)) and sorted(a.order) == list(range(6))
    assert a.info["rounds"] == 3 and a.info["llm_evaluations"] <= 3 * 30
    assert a.chosen == b.chosen and a.order == b.order
