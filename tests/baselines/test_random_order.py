"""Random baseline: a permutation, reproducible from its seed, different across seeds, rng required."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.baselines import choose_layers, layer_scores


def test_seeded_permutation(tiny_model, windows):
    a = layer_scores("random", tiny_model, windows, [2], np.random.default_rng(7))
    b = layer_scores("random", tiny_model, windows, [2], np.random.default_rng(7))
    assert sorted(a.scores) == list(range(6)) and a.chosen == b.chosen
    draws = {tuple(choose_layers("random", tiny_model, windows, 3, np.random.default_rng(s))) for s in range(10)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="pass rng"):
        layer_scores("random", tiny_model, windows, [2])
