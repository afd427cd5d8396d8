"""The select stage's games: plain, or repaired (``select.repair: linear``) with maps shared by both games."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from shapprune.config import ConfigError
from shapprune.game import LayerGame
from shapprune.models import resolve_device
from shapprune.repair.game import RepairedLayerGame
from shapprune.repair.linear import fit_maps
from shapprune.select import surrogate_fit
from tasks.select import SearchInputs, _games, _screen, fit_cost, round0_predictor
from tasks.shared.artifacts import write_windows
from tasks.shared.runtime import Stage
from tests.conftest import ROOT, tiny_llama

VOCAB = 512  # a small vocabulary: fast logits, in bf16 too


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models (and the cosine fit's Adam steps) run far faster on one thread on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _workspace(tmp_path, repair: str, sections: dict | None = None, vocab: int = 49152) -> Stage:
    """A select workspace (4 windows of 12 tokens in ``vocab``) with ``select.repair`` and ``sections`` updated."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["select"]["repair"] = repair
    for name, values in (sections or {}).items():
        raw[name] |= values
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    rng = np.random.default_rng(0)
    stage = Stage.open("select", tmp_path)
    for path in (stage.paths.calibration, stage.paths.validation, stage.paths.repair_windows):
        write_windows(rng.integers(3, vocab, size=(4, 12), dtype=np.int64), path, "test")
    return stage


def _stub_fp32_load(monkeypatch, full32) -> list:
    """``tasks.select.load_model`` answers ``full32`` (the fp32 model a test stands in for ``data/model``)."""
    calls = []

    def load(spec, dtype=None, device=None):
        calls.append((spec, dtype, device))
        return full32, None

    monkeypatch.setattr("tasks.select.load_model", load)
    return calls


@pytest.mark.parametrize("repair", ["none", "linear"])
def test_select_verifies_on_the_game_it_is_asked_for(tmp_path, repair, monkeypatch):
    model = tiny_llama(n_layers=5).double()
    full32 = tiny_llama(n_layers=5)  # data/model, loaded in fp32 for the fits
    calls = _stub_fp32_load(monkeypatch, full32)
    games = _games(_workspace(tmp_path, repair), model)
    assert len(calls) == (repair == "linear")  # once for both games
    assert set(games) == {"calibration", "validation"}
    kind = LayerGame if repair == "none" else RepairedLayerGame
    assert all(type(g) is kind for g in games.values())
    if repair == "linear":
        mask = np.array([[True, True, False, False, True]])
        games["calibration"](mask)
        games["validation"](mask)
        assert games["validation"].fits is games["calibration"].fits and list(games["calibration"].fits) == [(2, 4)]
        assert games["calibration"].fit == yaml.safe_load((ROOT / "params.yaml").read_text())["repair"]["fit"]
        assert all(g.fit_model is full32 for g in games.values())
        direct = RepairedLayerGame(
            model,
            games["calibration"].fit_windows,
            games["validation"].score_windows,
            fit=games["calibration"].fit,
            fit_model=full32,
            batch_size=games["calibration"].batch_size,
        )
        assert direct(mask)[0] == pytest.approx(games["validation"](mask)[0], rel=1e-9)
        assert all(g.scorer is not None for g in games.values())  # prefix reuse on, as in the plain game
        # the one pass that fitted (2, 4) ran layers 0..3 of the fit windows; the validation game paid none
        size = games["calibration"].fit_windows.size
        cost = fit_cost(games["calibration"], games["validation"])
        assert cost == {"fit_runs": 1, "fit_passes": 1, "fit_layer_token_forwards": size * 4}
    else:
        assert fit_cost(*games.values()) == {}


@pytest.mark.parametrize("prefix_reuse", [True, False])
def test_every_game_takes_score_masks_prefix_reuse(tmp_path, prefix_reuse):
    """The plain, the repaired and the screening game reuse prefixes exactly when score_masks.prefix_reuse says."""
    model = tiny_llama(n_layers=5, vocab_size=VOCAB)  # fp32: the repaired game fits on it, nothing loaded
    scoring = {"score_masks": {"prefix_reuse": prefix_reuse}}
    budgeted = scoring | {"select": {"repair": "none", "strategy": "budgeted", "screen_windows": 2}}
    plain = _games(_workspace(tmp_path / "plain", "none", scoring, VOCAB), model)
    repaired = _games(_workspace(tmp_path / "repaired", "linear", scoring, VOCAB), model)
    screen = _screen(_workspace(tmp_path / "screen", "none", budgeted, VOCAB), plain["calibration"])
    games = [*plain.values(), *repaired.values(), screen.game]
    assert len(games) == 5 and {type(g) for g in games} == {LayerGame, RepairedLayerGame}
    assert all(g.prefix_reuse is prefix_reuse and (g.scorer is not None) is prefix_reuse for g in games)


def test_the_repaired_game_fits_as_the_repair_stage_does(tmp_path, monkeypatch):
    """``repair.loss`` (cosine here) and fp32: a bf16 evaluated model gets the fits of fp32 data/model, the
    fits ``fit_maps`` makes there with the repair stage's options."""
    full32 = tiny_llama(n_layers=5, vocab_size=VOCAB)
    model = tiny_llama(n_layers=5, vocab_size=VOCAB).to(torch.bfloat16)
    calls = _stub_fp32_load(monkeypatch, full32)
    stage = _workspace(tmp_path, "linear", {"repair": {"loss": "cosine", "fit": "map"}}, VOCAB)
    games = _games(stage, model)
    assert calls == [(str(stage.paths.model), torch.float32, resolve_device(stage.params.base.device))]
    game = games["calibration"]
    assert all(g.loss == "cosine" and g.fit_model is full32 for g in games.values())
    game(np.array([[True, True, False, False, True]]))
    maps, reports, _ = fit_maps(
        full32, [(2, 4)], game.fit_windows, ridge=stage.params.repair.ridge, loss="cosine", batch_size=game.batch_size
    )
    assert torch.equal(game.fits[(2, 4)].t, maps[0].t) and game.reports[(2, 4)] == reports[0]
    assert game.fits[(2, 4)].seam.module is model.model.layers[1].mlp.down_proj  # merged into the bf16 model


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
