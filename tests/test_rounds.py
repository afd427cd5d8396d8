"""Scoring in rounds with the stop rule, on closed-form games (shapprune/rounds.py)."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.estimators.budget import mask_key
from shapprune.game import AdditiveGame
from shapprune.rounds import StopRule, interleave_by_size, score_until_resolved
from shapprune.sampling import stratified_masks
from shapprune.select.fit import surrogate_fit
from shapprune.select.search import beam_search

N = 14
STRATA = [11, 9, 7]


def design(count: int = 300, seed: int = 0) -> np.ndarray:
    """The paper's kind of design (stratum by stratum), interleaved as sample_masks writes it."""
    counts = [count // 3] * 3
    return interleave_by_size(stratified_masks(N, STRATA, counts, np.random.default_rng(seed)))


def propose(predict, n_layers: int, k: int) -> np.ndarray:
    return beam_search(predict, n_layers, k, 8)[0][:2]  # the top proposal and a runner-up


class Counting:
    """A game that counts how often each mask is asked for."""

    def __init__(self, game) -> None:
        self.game, self.asked = game, []
        self.n_players = game.n_players

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        self.asked.extend(mask_key(m) for m in masks)
        return self.game(masks)


def test_interleave_keeps_each_group_in_order_and_alternates():
    masks = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 1], [1, 0, 0], [0, 1, 0]], bool)  # sizes 3, 2, 2, 1, 1
    out = interleave_by_size(masks)
    assert out.sum(axis=1).tolist() == [3, 2, 1, 2, 1]
    assert [mask_key(m) for m in out if m.sum() == 2] == [mask_key(masks[1]), mask_key(masks[2])]
    assert sorted(mask_key(m) for m in out) == sorted(mask_key(m) for m in masks)


def test_every_prefix_of_whole_rounds_holds_the_strata_in_equal_shares():
    masks = design(300)
    for r in (1, 2, 5):
        sizes = masks[: 15 * r].sum(axis=1)
        assert [int((sizes == s).sum()) for s in STRATA] == [5 * r] * 3


def test_a_clear_additive_game_stops_early_on_its_k_lowest_players():
    weights = np.linspace(0.2, 2.0, N)[np.random.default_rng(3).permutation(N)]  # distinct, well separated
    game = Counting(AdditiveGame(weights))
    rule = StopRule(round_size=15, cap=300, patience=2)
    pool = score_until_resolved(game, design(), [3], surrogate_fit("ridge"), propose, rule, np.random.default_rng(1))
    assert pool.reason == "resolved"
    assert pool.n_evaluations < 60  # a handful of rounds, far from the cap
    assert set(pool.rounds[-1].proposals[3]) == set(np.argsort(weights)[:3].tolist())
    assert len(game.asked) == len(set(game.asked)) == pool.n_evaluations  # one pool: nothing scored twice
    assert pool.sources.count("proposal") <= 2 * len(pool.rounds)


def test_a_game_without_structure_runs_to_the_cap_and_never_past_it():
    """Values unrelated to the layers kept: the surrogate's proposal keeps changing, so the rule never resolves."""

    def noise(masks: np.ndarray) -> np.ndarray:
        return np.array([np.random.default_rng(int.from_bytes(mask_key(m), "little")).random() for m in masks])

    noise.n_players = N  # type: ignore[attr-defined]
    game = Counting(noise)
    for cap in (40, 47, 100):
        game.asked.clear()
        rule = StopRule(round_size=15, cap=cap, patience=3)
        pool = score_until_resolved(
            game, design(), [3, 5], surrogate_fit("ridge"), propose, rule, np.random.default_rng(2)
        )
        assert pool.reason == "cap"
        assert pool.n_evaluations == len(game.asked) <= cap
        assert pool.n_evaluations >= cap - 2  # the cap is spent, not left idle


def test_a_proposal_beaten_by_a_measured_mask_is_not_resolved():
    """A surrogate that insists on one set: stable, yet never agreeing with the LLM while a measured k-set beats it."""
    weights = np.linspace(0.2, 2.0, N)
    game = AdditiveGame(weights)
    wrong = np.ones(N, bool)
    wrong[-3:] = False  # drops the three most valuable players

    def fixed(predict, n_layers, k):
        return wrong[None].copy()

    best = np.ones(N, bool)
    best[:3] = False
    start = np.concatenate([best[None], design()])  # the best 3-drop set is measured in round one
    rule = StopRule(round_size=15, cap=90, patience=2)
    pool = score_until_resolved(game, start, [3], surrogate_fit("ridge"), fixed, rule, np.random.default_rng(0))
    assert pool.reason == "cap"
    assert not any(r.resolved[3] for r in pool.rounds)


def test_a_resumed_run_asks_only_for_what_it_lacks():
    """The pipeline's game answers from its checkpoints: a second run with the same generator seed replays the
    same rounds, so nothing scored in the first is scored again."""
    weights = np.linspace(0.2, 2.0, N)[np.random.default_rng(5).permutation(N)]
    base, cache, fresh = AdditiveGame(weights), {}, []

    def cached(masks: np.ndarray) -> np.ndarray:
        out = []
        for m in masks:
            if mask_key(m) not in cache:
                fresh.append(mask_key(m))
                cache[mask_key(m)] = float(base(m[None])[0])
            out.append(cache[mask_key(m)])
        return np.array(out)

    cached.n_players = N  # type: ignore[attr-defined]
    rule = StopRule(round_size=15, cap=300, patience=2)
    first = score_until_resolved(cached, design(), [3], surrogate_fit("ridge"), propose, rule, np.random.default_rng(7))
    n_first = len(fresh)
    again = score_until_resolved(cached, design(), [3], surrogate_fit("ridge"), propose, rule, np.random.default_rng(7))
    assert len(fresh) == n_first == first.n_evaluations
    assert again.n_evaluations == first.n_evaluations and again.reason == first.reason


def test_stop_rule_refuses_zero():
    with pytest.raises(ValueError, match="at least 1"):
        StopRule(round_size=0, cap=10)


def test_a_top_proposal_within_the_tolerance_of_the_best_measured_set_agrees():
    """Two sets the game cannot tell apart beyond 1 %: a surrogate alternating between them agrees with a
    tolerance of 2 % (resolved after ``patience`` rounds), never without one."""
    weights = np.linspace(0.2, 2.0, N)
    weights[3] = weights[2] * 1.005  # players 2 and 3 about equally worth dropping
    game = AdditiveGame(weights + 10.0)  # values far from 0: the tolerance is relative
    first, second = np.ones(N, bool), np.ones(N, bool)
    first[[0, 1, 2]] = False
    second[[0, 1, 3]] = False
    calls = []

    def alternating(predict, n_layers, k):
        calls.append(1)
        return (first if len(calls) % 2 else second)[None].copy()

    for tolerance, reason in ((0.02, "resolved"), (0.0, "cap")):
        calls.clear()
        rule = StopRule(round_size=15, cap=80, patience=2, tolerance=tolerance)
        pool = score_until_resolved(
            game, design(), [3], surrogate_fit("ridge"), alternating, rule, np.random.default_rng(0)
        )
        assert pool.reason == reason
        assert pool.rounds[-1].best[3] == (0, 1, 2)  # the best measured set, whichever the surrogate proposed last
