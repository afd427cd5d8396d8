"""The search + verification + refinement loop on closed-form games: right answer, budget, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shapprune.estimators.budget import known_values
from shapprune.sampling import stratified_masks
from shapprune.select import SearchConfig, budget_shares, select_subsets, surrogate_fit
from shapprune.table_game import TableGame
from tests.select.games import best_drop, block_game

CONFIG = SearchConfig(budget=40, per_k_candidates=4, beam_width=8, n_blocks=2, rounds=3)


def _initial(game: TableGame, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    masks = stratified_masks(game.n_players, [7, 6, 5], [8, 8, 8], np.random.default_rng(seed))
    return masks, game.values[game.index(masks)]


def _run(game, validation=None, config=CONFIG, seed=1, fit=None, n_drops=(2, 3), **kw):
    masks, values = _initial(game)
    return select_subsets(
        game,
        list(n_drops),
        game.shapley(),
        masks,
        values,
        fit or surrogate_fit("quadratic"),
        np.random.default_rng(seed),
        validation=validation,
        config=config,
        known=known_values(game.n_players, full=float(game.values[-1])),
        **kw,
    )


@pytest.mark.parametrize("block", [(4, 5, 6), (1, 4, 6)])
def test_search_finds_the_block_that_ranking_misses(block):
    pair = (1, 2) if block == (4, 5, 6) else (2, 5)
    game = block_game(block=block, pair=pair)
    val = block_game(block=block, pair=pair)
    sel = _run(game, validation=val)
    assert sel.chosen[3].dropped == best_drop(game, 3) == list(block)
    assert sel.chosen_by[3] == "validation"
    rank = sel.from_source(3, "ranking")
    assert rank is not None and rank.dropped != list(block) and rank.calibration < sel.chosen[3].calibration
    assert sel.chosen[2].calibration == game.values[game.index(sel.chosen[2].mask[None])][0]


@pytest.mark.parametrize("budget", [1, 2, 3, 7, 40])
def test_budget_counts_distinct_llm_evaluations_calibration_and_validation(budget):
    game, val = block_game(), block_game()
    config = SearchConfig(budget=budget, per_k_candidates=4, beam_width=8, n_blocks=2, rounds=3)
    sel = _run(game, validation=val, config=config)
    assert game.calls + val.calls == sel.n_evaluations <= budget  # the initial masks were looked up, not played
    assert sel.n_calibration_evaluations == game.calls and sel.n_validation_evaluations == val.calls
    verified = [c for c in sel.candidates if c.verified]
    assert all(np.isfinite(c.validation) for c in verified)
    assert sel.n_validation_evaluations == len(verified)


def test_without_validation_the_choice_is_by_calibration_and_scored_masks_are_free():
    game = block_game()
    sel = _run(game, n_drops=(1, 2, 3))
    assert sel.n_validation_evaluations == 0 and set(sel.chosen_by.values()) == {"calibration"}
    for k in (1, 2, 3):
        best = game.values[game.index(sel.chosen[k].mask[None])][0]
        assert best == max(game.values[game.index(c.mask[None])][0] for c in sel.candidates if c.n_drop == k)
    assert sel.chosen[3].dropped == [4, 5, 6]


def test_validation_decides_between_verified_candidates():
    game = block_game()
    noise = np.random.default_rng(5).normal(0, 0.3, size=len(game.values))
    val = TableGame(game.values + noise)
    sel = _run(game, validation=val)
    for k, chosen in sel.chosen.items():
        verified = [c for c in sel.candidates if c.n_drop == k and c.verified]
        assert chosen.validation == max(c.validation for c in verified)
        assert chosen.validation == val.values[val.index(chosen.mask[None])][0]


def test_same_seed_same_choice_and_candidates():
    a, b = _run(block_game(), fit=surrogate_fit("gbr")), _run(block_game(), fit=surrogate_fit("gbr"))
    pd.testing.assert_frame_equal(pd.DataFrame(a.records()), pd.DataFrame(b.records()))
    assert {k: c.dropped for k, c in a.chosen.items()} == {k: c.dropped for k, c in b.chosen.items()}


def test_verified_candidates_join_the_training_data_each_round():
    game = block_game()
    seen: list[np.ndarray] = []
    inner = surrogate_fit("ridge")

    def fit(masks, values, rng):
        seen.append(masks.copy())
        return inner(masks, values, rng)

    sel = _run(game, fit=fit)
    assert len(seen) == CONFIG.rounds  # round 0 (no predictor given) + a refit before every later round
    assert len(seen[0]) == 24 and len(seen[0]) < len(seen[1]) < len(seen[2])
    trained = {m.tobytes() for m in seen[-1]}
    early = [c for c in sel.candidates if c.verified and c.round < CONFIG.rounds - 1]
    assert early and all(c.mask.tobytes() in trained for c in early)
    assert {c.round for c in sel.candidates if c.verified} == set(range(CONFIG.rounds))


def test_budget_shares_follow_k_and_add_up():
    assert budget_shares(128, [6]) == {6: 128}
    shares = budget_shares(100, [1, 2, 3])
    assert sum(shares.values()) == 100 and shares[1] < shares[2] < shares[3]


def test_bad_requests_name_the_fix():
    with pytest.raises(ValueError, match="select.n_drops"):
        _run(block_game(), n_drops=(8,))
    with pytest.raises(ValueError, match="select.beam_width"):
        SearchConfig(beam_width=0)
