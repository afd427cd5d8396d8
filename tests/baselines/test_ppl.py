"""Single-layer-removal perplexity (Shortened-LLaMA PPL): equals masked_nll, deterministic, identity layer first."""

from __future__ import annotations

import numpy as np

from shapprune.baselines import choose_layers, layer_scores
from shapprune.baselines.ppl import drop_one_nll
from shapprune.scoring import masked_nll, window_nll


def test_equals_masked_nll_of_every_single_removal(tiny_model, windows):
    got = drop_one_nll(tiny_model, windows, batch_size=2)
    expected = [masked_nll(tiny_model, windows, ~np.eye(6, dtype=bool)[i], batch_size=2).mean for i in range(6)]
    assert got.shape == (6,)
    np.testing.assert_array_equal(got, expected)  # prefix reuse is bit-identical
    np.testing.assert_array_equal(drop_one_nll(tiny_model, windows, batch_size=2), got)


def test_identity_layer_removal_costs_nothing_and_goes_first(identity_model, identity_text):
    nll = drop_one_nll(identity_model, identity_text)
    full = window_nll(identity_model, identity_text).mean
    assert abs(nll[2] - full) < 1e-6 and np.argmin(nll) == 2
    assert choose_layers("ppl", identity_model, identity_text, 1) == [2]
    assert layer_scores("ppl", identity_model, identity_text, [2]).info["ppl_without_layer"][2] > 1
