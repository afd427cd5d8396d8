"""Block influence (ShortGPT): shapes, determinism, a hand computation and the identity-layer known answer."""

from __future__ import annotations

import copy

import numpy as np
import torch

from shapprune.baselines import choose_layers, layer_scores
from shapprune.baselines.block_influence import block_influence


def test_shape_range_and_determinism(tiny_model, windows):
    a = block_influence(tiny_model, windows, batch_size=2)
    b = block_influence(tiny_model, windows, batch_size=3)  # batching must not matter
    assert a.shape == (6,) and np.all((a >= 0) & (a <= 2))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_matches_hidden_states_by_hand(tiny_model, windows):
    """BI_l = 1 - mean_t cos(h_l, h_{l+1}) with HF's output_hidden_states (its last entry is after the final
    norm, so the last layer is checked by hooks below)."""
    with torch.no_grad():
        hs = tiny_model(torch.as_tensor(windows), output_hidden_states=True).hidden_states  # L+1 x [b, T, d]
    expected = [
        1 - torch.nn.functional.cosine_similarity(hs[i], hs[i + 1], dim=-1).double().mean().item() for i in range(5)
    ]
    np.testing.assert_allclose(block_influence(tiny_model, windows)[:5], expected, rtol=1e-4, atol=1e-6)


def test_every_layer_against_what_enters_and_leaves_it(tiny_model, windows):
    """BI_l = 1 - mean_t cos(input of layer l, its output), taken by hooks: the last layer too (before the norm)."""
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():  # a final norm that changes directions, so that after the norm is not before it
        model.model.norm.weight.copy_(torch.linspace(0.2, 3.0, model.model.norm.weight.numel()))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(module, args, kwargs, out):
        entering = args[0] if args else kwargs["hidden_states"]
        seen.append((entering, out[0] if isinstance(out, tuple) else out))

    hooks = [layer.register_forward_hook(record, with_kwargs=True) for layer in model.model.layers]
    with torch.no_grad():
        normed = model(torch.as_tensor(windows), output_hidden_states=True).hidden_states[-1]  # [b, T, d]
    for hook in hooks:
        hook.remove()
    expected = [1 - torch.nn.functional.cosine_similarity(a, b, dim=-1).double().mean().item() for a, b in seen]
    assert len(expected) == 6
    np.testing.assert_allclose(block_influence(model, windows), expected, rtol=1e-4, atol=1e-6)
    after_norm = 1 - torch.nn.functional.cosine_similarity(seen[-1][0], normed, dim=-1).double().mean().item()
    assert abs(after_norm - expected[-1]) > 1e-3  # the check above would see a score taken after the norm


def test_identity_layer_has_the_lowest_influence_and_goes_first(identity_model, windows):
    bi = block_influence(identity_model, windows)
    assert bi[2] < 1e-5 and np.argmin(bi) == 2 and np.sort(bi)[1] > 1e-3
    assert choose_layers("block_influence", identity_model, windows, 1) == [2]
    result = layer_scores("block_influence", identity_model, windows, [1, 2, 3])
    assert result.ranking()[0] == 2 and all(2 in result.drop(k) for k in (1, 2, 3))
