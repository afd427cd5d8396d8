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
    for k, v in model.state_dict().items():  # restored exactly
        assert torch.equal(v, before[k]), k
    plain = LayerGame(model, score, batch_size=8)(MASKS)
    assert values[4] == pytest.approx(plain[4], rel=1e-9)  # unrepaired run: same as the plain game
    assert values[1] > plain[1] and values[2] > plain[2]  # repair helps on these (held-out score windows)
