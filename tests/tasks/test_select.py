"""The select stage's games: plain, or repaired (``select.repair: linear``) with maps shared by both games."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from shapprune.config import ConfigError
from shapprune.game import LayerGame
from shapprune.repair.game import RepairedLayerGame
from shapprune.select import surrogate_fit
from tasks.select import SearchInputs, _games, fit_cost, round0_predictor
from tasks.shared.artifacts import write_windows
from tasks.shared.runtime import Stage
from tests.conftest import ROOT, tiny_llama


def _workspace(tmp_path, repair: str) -> Stage:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["select"]["repair"] = repair
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    rng = np.random.default_rng(0)
    stage = Stage.open("select", tmp_path)
    for path in (stage.paths.calibration, stage.paths.validation, stage.paths.repair_windows):
        write_windows(rng.integers(3, 49152, size=(4, 12), dtype=np.int64), path, "test")
    return stage


@pytest.mark.parametrize("repair", ["none", "linear"])
def test_select_verifies_on_the_game_it_is_asked_for(tmp_path, repair):
    model = tiny_llama(n_layers=5).double()
    games = _games(_workspace(tmp_path, repair), model)
    assert set(games) == {"calibration", "validation"}
    kind = LayerGame if repair == "none" else RepairedLayerGame
    assert all(type(g) is kind for g in games.values())
    if repair == "linear":
        mask = np.array([[True, True, False, False, True]])
        games["calibration"](mask)
        games["validation"](mask)
        assert games["validation"].fits is games["calibration"].fits and list(games["calibration"].fits) == [(2, 4)]
        assert games["calibration"].fit == yaml.safe_load((ROOT / "params.yaml").read_text())["repair"]["fit"]
        direct = RepairedLayerGame(
            model, games["calibration"].fit_windows, games["validation"].score_windows, fit=games["calibration"].fit
        )
        assert direct(mask)[0] == pytest.approx(games["validation"](mask)[0], rel=1e-9)
        assert all(g.scorer is not None for g in games.values())  # prefix reuse on, as in the plain game
        # the one pass that fitted (2, 4) ran layers 0..3 of the fit windows; the validation game paid none
        size = games["calibration"].fit_windows.size
        cost = fit_cost(games["calibration"], games["validation"])
        assert cost == {"fit_runs": 1, "fit_passes": 1, "fit_layer_token_forwards": size * 4}
    else:
        assert fit_cost(*games.values()) == {}


def test_without_repair_windows_the_repaired_game_names_the_fix(tmp_path):
    stage = _workspace(tmp_path, "linear")
    stage.paths.repair_windows.unlink()
    with pytest.raises(ConfigError, match=r"set prepare_data.repair_windows > 0 .* or set select.repair: none"):
        _games(stage, tiny_llama(n_layers=5).double())


def test_round0_surrogate_learns_from_the_unrepaired_scores_only_when_they_are_not_the_games_values():
    rng = np.random.default_rng(0)
    masks = rng.random((40, 6)) < 0.7  # [n, L]
    values = masks @ np.linspace(0.1, 0.6, 6)  # additive: a ridge surrogate recovers it
    mlp = object()
    inputs = SearchInputs(masks, values, np.zeros(6), mlp, len(values))
    fit = surrogate_fit("ridge")
    assert round0_predictor(inputs, "mlp", "linear", fit, rng) is mlp  # the fit_surrogate stage's MLP
    assert round0_predictor(inputs, "ridge", "none", fit, rng) is None  # select_subsets fits it on the scored masks
    predict = round0_predictor(inputs, "ridge", "linear", fit, np.random.default_rng(1))
    np.testing.assert_allclose(predict(masks), fit(masks, values, np.random.default_rng(1))(masks))
    np.testing.assert_allclose(predict(masks), values, atol=0.05)
