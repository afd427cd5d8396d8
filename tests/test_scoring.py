import copy
import math

import numpy as np
import pytest
import torch

from shapprune.game import LayerGame
from shapprune.scoring import NLL, utility_from_nll, window_nll
from shapprune.surgery import keep_layers


def test_window_nll_matches_a_hand_computation(tiny_model, ids):
    windows = ids.numpy()
    with torch.inference_mode():
        logits = tiny_model(input_ids=ids).logits.double()
    logp = torch.log_softmax(logits, -1)
    total = 0.0
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            total -= float(logp[b, t, ids[b, t + 1]])
    got = window_nll(tiny_model, windows, batch_size=1)
    assert got.tokens == ids.shape[0] * (ids.shape[1] - 1)
    assert math.isclose(got.total, total, rel_tol=1e-5)
    assert math.isclose(got.perplexity, math.exp(total / got.tokens), rel_tol=1e-5)
    assert math.isclose(window_nll(tiny_model, windows, batch_size=3).total, got.total, rel_tol=1e-6)


def test_utilities():
    full, worse = NLL(20.0, 10), NLL(30.0, 10)
    assert math.isclose(utility_from_nll(worse, full), math.exp(2.0 - 3.0))  # PPL_full / PPL_masked
    assert utility_from_nll(full, full) == 1.0
    assert utility_from_nll(worse, full, "neg_log_ppl") == -3.0
    assert utility_from_nll(NLL(float("inf"), 10), full) == 0.0
    assert math.isnan(utility_from_nll(NLL(float("nan"), 10), full))


def test_layer_game_scores_each_mask_as_the_model_cut_to_it_and_counts_calls(tiny_model, ids):
    game = LayerGame(tiny_model, ids.numpy(), batch_size=4)
    masks = np.ones((3, game.n_players), bool)
    masks[1, 2] = False
    masks[2, :3] = False
    u = game(masks)
    assert game.calls == 3
    full = window_nll(tiny_model, ids.numpy(), batch_size=4)
    for mask, value in zip(masks, u):  # each mask against a copy with its layers removed for good
        cut = window_nll(keep_layers(copy.deepcopy(tiny_model), mask), ids.numpy(), batch_size=4)
        assert value == pytest.approx(utility_from_nll(cut, full), rel=1e-6)
    assert u[0] == 1.0 and len(set(u.tolist())) == 3  # a random model: a cut may help or hurt


def test_layer_game_with_prefix_reuse_equals_scoring_each_mask_whole(tiny_model, ids):
    """Reused states (the pinned full model's and earlier calls') change the time, never a value."""
    rng = np.random.default_rng(3)
    masks = rng.random((12, 6)) < 0.7  # [12, L]
    whole = LayerGame(tiny_model, ids.numpy(), batch_size=2)
    reused = LayerGame(tiny_model, ids.numpy(), batch_size=2, prefix_reuse=True)
    got = np.concatenate([reused(masks[:5]), reused(masks[5:6]), reused(masks[6:])])  # calls of 5, 1 and 6
    assert got.tolist() == whole(masks).tolist() and reused.calls == whole.calls == 12
    assert reused.full == whole.full  # the pinning forward gives the full model's NLL
    assert reused.scorer.stats.run_layers < reused.scorer.stats.full_layers == int(masks.sum())
