"""The repaired layer game equals "repair, then score" mask by mask and leaves the model untouched."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from shapprune.game import LayerGame
from shapprune.repair.game import RepairedLayerGame
from shapprune.repair.linear import linear_repair
from shapprune.scoring import utility_from_nll, window_nll

MASKS = np.array(
    [
        [1, 1, 1, 1, 1, 1],
        [1, 1, 0, 1, 1, 1],
        [1, 1, 0, 0, 1, 1],
        [1, 0, 1, 0, 1, 1],
        [0, 1, 1, 1, 1, 1],  # layer-0 run: tied embedding, left unrepaired
        [1, 1, 0, 1, 1, 0],  # run (2, 3) again: fitted once
    ],
    dtype=bool,
)


def test_equals_repair_then_score(calibration) -> None:
    model, fit, score = calibration
    before = {k: v.clone() for k, v in model.state_dict().items()}
    game = RepairedLayerGame(model, fit, score, batch_size=8)
    values = game(MASKS)
    for mask, value in zip(MASKS, values):
        if mask.all():
            assert value == pytest.approx(1.0)
            continue
        repaired = copy.deepcopy(model)
        linear_repair(repaired, mask, fit, batch_size=8)
        expected = utility_from_nll(window_nll(repaired, score, 8), game.full)
        assert value == pytest.approx(expected, rel=1e-6)
    assert game.calls == len(MASKS) and set(game.fits) == {(2, 3), (2, 4), (1, 2), (3, 4), (0, 1), (5, 6)}
    # one pass over the fit windows for the whole call, run to the deepest run's last layer (5)
    assert (game.fit_passes, game.fit_layer_tokens) == (1, fit.size * 6)
    game(np.array([[1, 0, 0, 1, 1, 1], [1, 1, 0, 1, 1, 1]], bool))  # a new run (1, 3): a second pass, to layer 2
    assert (game.fit_passes, game.fit_layer_tokens) == (2, fit.size * 9)
    game(MASKS[1:2])  # nothing new: no pass
    assert game.fit_passes == 2
    for k, v in model.state_dict().items():  # restored exactly
        assert torch.equal(v, before[k]), k
    plain = LayerGame(model, score, batch_size=8)(MASKS)
    assert values[4] == pytest.approx(plain[4], rel=1e-9)  # unrepaired run: same as the plain game
    assert values[1] > plain[1] and values[2] > plain[2]  # repair helps on these (held-out score windows)


@pytest.mark.parametrize("fit", ["map", "refit"])
def test_prefix_reuse_is_bit_identical(calibration, fit) -> None:
    """Starting from the full model's or an earlier mask's states gives the values of scoring each mask whole."""
    model, fit_windows, score = calibration
    masks = np.concatenate([MASKS, [[1, 1, 1, 0, 0, 1], [1, 1, 1, 0, 1, 1], [1, 1, 0, 1, 1, 1]]]).astype(bool)
    plain = RepairedLayerGame(model, fit_windows, score, fit=fit, batch_size=4)
    reused = RepairedLayerGame(model, fit_windows, score, fit=fit, batch_size=4, prefix_reuse=True)
    expected = plain(masks)
    got = np.concatenate([reused(masks[:4]), reused(masks[4:])])  # two calls: the cache outlives a call
    assert got.tolist() == expected.tolist()
    assert reused.full == plain.full and reused.calls == plain.calls == len(masks)
    stats = reused.scorer.stats
    assert stats.full_layers == int(masks.sum()) and 0 < stats.run_layers < stats.full_layers


def test_signature_marks_the_layer_each_fit_rewrites(calibration) -> None:
    model, fit_windows, score = calibration
    game = RepairedLayerGame(model, fit_windows, score, batch_size=8)
    mask = np.array([0, 1, 0, 0, 1, 1], bool)
    game(mask[None])
    # layer 0's run is left unrepaired (tied embedding); the run [2, 4) rewrites layer 1's projection
    assert game.signature(mask).tolist() == [0, 6, 0, 0, 1, 1]


def test_fits_take_the_loss_and_the_fp32_model_of_the_repair_stage(calibration) -> None:
    """On a bf16 model with ``fit_model`` its fp32 full model, a fit is the repair stage's: ``linear_repair`` on
    the fp32 model with the same loss gives the same weights; fitting on the bf16 model or by least squares does not."""
    from shapprune.surgery import keep_layers

    model, fit_windows, score = calibration
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    before = {k: v.clone() for k, v in bf16.state_dict().items()}
    mask = np.array([1, 1, 0, 0, 1, 1], bool)
    games = {
        "cosine32": RepairedLayerGame(bf16, fit_windows, score, loss="cosine", fit_model=model, batch_size=8),
        "cosine16": RepairedLayerGame(bf16, fit_windows, score, loss="cosine", batch_size=8),
        "lstsq32": RepairedLayerGame(bf16, fit_windows, score, fit_model=model, batch_size=8),
    }
    for game in games.values():
        game(mask[None])
    fitted = games["cosine32"].fits[(2, 4)]
    assert fitted.seam.module is bf16.model.layers[1].mlp.down_proj  # merged into the evaluated model
    assert all(torch.equal(v, before[k]) for k, v in bf16.state_dict().items())  # and taken out again
    stage = copy.deepcopy(model)  # the repair stage: tasks/repair.py's call on the fp32 full model
    report = linear_repair(stage, mask, fit_windows, loss="cosine", batch_size=8)
    assert games["cosine32"].reports[(2, 4)].cosine == report.repaired[0].cosine is not None
    assert games["lstsq32"].reports[(2, 4)].cosine is None

    def merged_copy(fit) -> dict:  # the fp32 model with a game's fit merged, cut as repair cuts it
        twin = copy.deepcopy(model)
        fit.merge(twin.get_submodule(fit.seam.target))
        return keep_layers(twin, mask).state_dict()

    repaired, seam = stage.state_dict(), "model.layers.1.mlp.down_proj.weight"
    assert all(torch.equal(v, repaired[k]) for k, v in merged_copy(fitted).items())
    for other in ("cosine16", "lstsq32"):  # another precision or another loss: another fit
        assert not torch.equal(merged_copy(games[other].fits[(2, 4)])[seam], repaired[seam])
