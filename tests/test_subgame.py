"""The LLM sub-game equals the plain layer game on the corresponding full masks."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.game import LayerGame
from shapprune.shapley import all_masks
from shapprune.subgame import SubGame
from tests.conftest import tiny_llama


@pytest.fixture(scope="module")
def model():
    return tiny_llama(n_layers=6, seed=3)


@pytest.mark.parametrize("players", [[2, 3, 4], [1, 4], [3, 4, 5]], ids=["middle", "gapped", "tail"])
@pytest.mark.parametrize("utility", ["ppl_ratio", "neg_log_ppl"])
def test_subgame_equals_layer_game(model, ids, players, utility):
    windows = ids.numpy()
    sub = SubGame(model, windows, players, utility=utility, batch_size=2)
    plain = LayerGame(model, windows, utility=utility, batch_size=2)
    masks = all_masks(len(players))  # [2**P, P]
    full_masks = np.stack([sub.layer_mask(m) for m in masks])  # [2**P, L]
    got, want = sub(masks), plain(full_masks)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    assert sub.calls == len(masks) and len(set(np.round(want, 9))) > 1
    assert sub.full.total == pytest.approx(plain.full.total, rel=1e-12)


def test_subgame_skips_the_layers_before_the_first_player(model, ids):
    sub = SubGame(model, ids.numpy(), [4, 5], batch_size=3)
    seen: list[int] = []
    handles = [
        layer.register_forward_pre_hook(lambda _m, _a, i=i: seen.append(i))
        for i, layer in enumerate(model.model.layers)
    ]
    try:
        sub(np.array([[True, False]]))
    finally:
        for h in handles:
            h.remove()
    assert seen == [4]


def test_subgame_rejects_bad_players(model, ids):
    with pytest.raises(ValueError, match="players"):
        SubGame(model, ids.numpy(), [2, 2])
    with pytest.raises(ValueError, match="players"):
        SubGame(model, ids.numpy(), [6])
