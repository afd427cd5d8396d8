"""Taylor+ (weight x gradient): shapes, autograd by hand, fp32 on a copy, identity layer first, protection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shapprune.baselines import layer_scores
from shapprune.baselines.taylor import taylor_importance
from tests.conftest import tiny_llama


def test_block_reduce_matches_a_hand_computation(windows):
    model = tiny_llama(seed=3)
    ids = torch.as_tensor(windows)
    loss = model(input_ids=ids, labels=ids).loss  # mean next-token NLL
    params = [list(layer.parameters()) for layer in model.model.layers]
    grads = torch.autograd.grad(loss, [p for ps in params for p in ps])
    expected, g = [], iter(grads)
    for ps in params:
        expected.append(abs(sum(float((p.detach() * next(g)).sum()) for p in ps)))
    got = taylor_importance(model, windows, batch_size=1, reduce="block")  # batch by batch
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert all(p.grad is None for p in model.parameters())


def test_element_is_deterministic_and_leaves_a_bf16_model_untouched(tiny_model, windows):
    model = tiny_llama(seed=0).to(torch.bfloat16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = taylor_importance(model, windows)
    assert a.shape == (6,) and np.all(a > 0)
    np.testing.assert_array_equal(a, taylor_importance(model, windows))
    assert next(model.parameters()).dtype == torch.bfloat16
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    np.testing.assert_allclose(a, taylor_importance(tiny_model, windows), rtol=0.3)  # bf16 weights, fp32 grads


def test_identity_layer_scores_zero_and_goes_first(identity_model, windows):
    result = layer_scores("taylor", identity_model, windows, [1], protect_first=0, protect_last=0)
    assert result.scores[2] == 0 and result.drop(1) == [2]


def test_protected_layers_are_never_removed(tiny_model, windows):
    result = layer_scores("taylor", tiny_model, windows, [1, 2], protect_first=2, protect_last=1)
    assert np.isinf(result.scores[[0, 1, 5]]).all() and set(result.drop(2)) <= {2, 3, 4}
    with pytest.raises(ValueError, match="leaves 3 to remove but 4"):
        layer_scores("taylor", tiny_model, windows, [4], protect_first=2, protect_last=1)
