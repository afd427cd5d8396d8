"""The budgeted subset search: it never spends more than its budget, finds known best sets, and is deterministic."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from shapprune.baselines.cost import sleb_cost
from shapprune.estimators.budget import known_values, mask_key
from shapprune.select import BudgetPlan, budgeted_select, sleb_shares
from shapprune.select.moves import fit_ranker, swaps


class BlockGame:
    """``v(S) = exp(-loss)``: each dropped layer costs ``cost[i]``, each dropped adjacent pair gives ``bonus`` back.

    Cheap layers form a block and a few scattered singles, so the best set is a block plus single layers.
    Counts every mask it is asked for (repeats included) and the kept layers of each.
    """

    def __init__(self, cost: np.ndarray, bonus: float) -> None:
        self.cost, self.bonus, self.n_players = np.asarray(cost, float), bonus, len(cost)
        self.calls, self.kept = 0, 0

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)  # [n, L]
        self.calls += len(masks)
        self.kept += int(masks.sum())
        dropped = ~masks
        loss = dropped @ self.cost - self.bonus * (dropped[:, 1:] & dropped[:, :-1]).sum(axis=1)
        return np.exp(-loss)


def block_plus_singles(n_players: int = 16) -> BlockGame:
    cost = np.ones(n_players)
    cost[6:9], cost[[2, 13]] = 0.5, 0.3  # the block 6-8 and the singles 2 and 13
    return BlockGame(cost, 0.4)


def exhaustive(game: BlockGame, k: int) -> list[int]:
    """The best ``k`` layers to drop, by enumerating every subset."""
    subsets = list(itertools.combinations(range(game.n_players), k))
    masks = np.ones((len(subsets), game.n_players), dtype=bool)
    for row, subset in enumerate(subsets):
        masks[row, list(subset)] = False
    return list(subsets[int(np.argmax(game(masks)))])


def test_sleb_cost_and_shares():
    assert sleb_cost(30, 3) == 87 and sleb_cost(30, 6) == 165 and sleb_cost(30, 9) == 234
    shares = sleb_shares(100, [9, 3, 6], 30)
    assert sum(shares.values()) == 100 and shares[3] < shares[6] < shares[9]


def test_swaps_exchange_one_dropped_layer_for_one_kept():
    mask = np.array([True, False, True, False, True])
    moves = swaps(mask)
    assert moves.shape == (2 * 3, 5)
    assert ((~moves).sum(axis=1) == 2).all() and ((moves != mask).sum(axis=1) == 2).all()
    assert len({mask_key(m) for m in moves}) == len(moves)


def test_the_ranker_recovers_an_additive_model_with_adjacency():
    game = block_plus_singles()
    rng = np.random.default_rng(0)
    masks = rng.random((200, 16)) < 0.6
    predict = fit_ranker(masks, np.log(game(masks)), ridge=1e-8)
    test = rng.random((20, 16)) < 0.6
    np.testing.assert_allclose(predict(test), np.log(game(test)), atol=1e-6)


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("fraction", [1 / 4, 1 / 3, 1 / 2, 1.0])
def test_finds_the_exhaustive_best_within_a_fraction_of_slebs_cost(k, fraction):
    game = block_plus_singles()
    budget = int(fraction * sleb_cost(game.n_players, k))
    selection = budgeted_select(game, [k], budget, np.random.default_rng(0))
    assert selection.chosen[k].dropped == exhaustive(block_plus_singles(), k)
    assert selection.n_evaluations <= budget


@pytest.mark.parametrize("budget", [1, 2, 5, 17, 40, 200])
@pytest.mark.parametrize("ks", [[2], [3, 6], [1, 4, 9]])
def test_the_budget_is_never_exceeded_and_costs_add_up(budget, ks):
    rng = np.random.default_rng(budget)
    game = BlockGame(rng.uniform(0.1, 1.0, 12), 0.2)
    full = known_values(12, full=1.0)
    if budget < len(ks):
        with pytest.raises(ValueError, match="at least 1 evaluation per k searched"):
            budgeted_select(game, ks, budget, np.random.default_rng(1), known=full)
        return
    selection = budgeted_select(game, ks, budget, np.random.default_rng(1), known=full)
    assert game.calls == selection.n_evaluations <= budget  # no mask asked twice, none beyond the budget
    assert sum(c.evaluations for c in selection.costs.values()) == game.calls
    assert sum(c.kept_layers for c in selection.costs.values()) == game.kept
    assert sorted(selection.chosen) == ks


def test_known_values_are_free_and_seed_the_search():
    game = block_plus_singles()
    best = exhaustive(block_plus_singles(), 5)
    mask = np.ones(16, dtype=bool)
    mask[best] = False
    known = {mask_key(mask): float(block_plus_singles()(mask[None])[0])}
    selection = budgeted_select(game, [5], 3, np.random.default_rng(0), known=known)
    assert selection.chosen[5].dropped == best and game.calls <= 3


def test_deterministic_for_a_fixed_seed():
    runs = [budgeted_select(block_plus_singles(), [3, 6], 60, np.random.default_rng(7)) for _ in range(2)]
    assert [c.bits for c in runs[0].candidates] == [c.bits for c in runs[1].candidates]
    assert runs[0].notes == runs[1].notes


def test_the_notes_say_when_a_larger_budget_could_change_the_choice():
    tight = budgeted_select(block_plus_singles(), [5], 14, np.random.default_rng(0))  # stops mid-climb
    assert tight.notes[5]["larger_budget_may_change"]
    ample = budgeted_select(block_plus_singles(), [5], 400, np.random.default_rng(0))
    assert ample.notes[5]["local_optimum"] and not ample.notes[5]["larger_budget_may_change"]


def test_bad_requests_name_the_fix():
    with pytest.raises(ValueError, match=r"select.n_drops: \[16\] outside \[1, 15\]"):
        budgeted_select(block_plus_singles(), [16], 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="select.budget must be at least 1 evaluation per k"):
        budgeted_select(block_plus_singles(), [3], 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="block_share"):
        BudgetPlan(block_share=0)


def test_lazy_greedy_at_full_width_is_slebs_greedy_removal():
    from shapprune.estimators.budget import BudgetedGame
    from shapprune.select.plain import lazy_greedy
    from shapprune.select.spend import Spend

    game = BlockGame(np.random.default_rng(3).uniform(0.1, 1.0, 10), 0.15)
    keep, sleb = np.ones(10, dtype=bool), []
    for _ in range(4):  # SLEB: every kept layer tried at every step
        kept = np.flatnonzero(keep)
        masks = np.repeat(keep[None], len(kept), axis=0)
        masks[np.arange(len(kept)), kept] = False
        sleb.append(int(kept[np.argmax(game(masks))]))
        keep[sleb[-1]] = False
    spend = Spend(BudgetedGame(game, None), log_utility=True)
    spend.limit = 10**6
    assert lazy_greedy(spend, 10, 4, width=10) == sleb
    assert spend.game.n_evaluations == sleb_cost(10, 4)
    narrow = Spend(BudgetedGame(game, None), log_utility=True)
    narrow.limit = 10**6
    lazy_greedy(narrow, 10, 4, width=3)
    assert narrow.game.n_evaluations <= 10 + 3 * 3  # the first step, then 3 candidates a step


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_lazy_greedy_does_not_see_a_constant_added_to_the_utility(seed):
    """neg_log_ppl is log(ppl_ratio) minus the full model's NLL: the same removal order, with the full model known."""
    from shapprune.estimators.budget import BudgetedGame
    from shapprune.select.plain import lazy_greedy
    from shapprune.select.spend import Spend

    game = BlockGame(np.random.default_rng(seed).uniform(0.1, 1.0, 12), -0.5)  # adjacent drops cost extra

    class Shifted:  # the same game as -NLL: log of the value, minus a full model's NLL of 2.5
        n_players = 12

        def __call__(self, masks: np.ndarray) -> np.ndarray:
            return np.log(game(masks)) - 2.5

    orders, measured = [], []
    for g, full, log_utility in ((game, 1.0, True), (Shifted(), -2.5, False)):
        spend = Spend(BudgetedGame(g, None, known=known_values(12, full=full)), log_utility)
        spend.limit = 10**6
        orders.append(lazy_greedy(spend, 12, 6, width=2))
        measured.append(spend.game.scored()[0])  # [n, L] in the order asked: the candidates each step chose
    assert orders[0] == orders[1] and len(orders[0]) == 6
    np.testing.assert_array_equal(measured[0], measured[1])


@pytest.mark.parametrize("cap", [1, 3, 6, 10])
def test_the_block_scan_keeps_to_its_allowance(cap):
    from shapprune.estimators.budget import BudgetedGame
    from shapprune.select.plain import block_scan
    from shapprune.select.spend import Spend

    spend = Spend(BudgetedGame(BlockGame(np.linspace(0.1, 1.0, 30), 0.2), 100), log_utility=True)
    spend.limit = 100
    block_scan(spend, 30, 3, cap)  # 28 blocks: a strided scan, then the starts around the best one
    assert 1 <= spend.game.n_evaluations <= cap


def test_the_block_scan_shrinks_so_that_lazy_greedy_fits():
    from shapprune.select.plain import block_cap

    plan = BudgetPlan()  # block_share 0.6, greedy_width 4, min_width 2, min_blocks 4
    assert block_cap(plan, 100, 5, 18) == 60  # room for both: the usual allowance
    assert block_cap(plan, 40, 5, 18) == 40 - 18 - 4 * 4  # the widest greedy that leaves 4 blocks or more
    assert block_cap(plan, 26, 5, 18) == 15  # no greedy leaves 4 blocks: the scan keeps its allowance
    assert block_cap(BudgetPlan(min_blocks=0), 26, 5, 18) == 0
    assert block_cap(BudgetPlan(shrink_blocks=False), 40, 5, 18) == 24
    sel = budgeted_select(BlockGame(np.linspace(0.1, 1.0, 18), 0.2), [5], 40, np.random.default_rng(0))
    assert sel.notes[5]["phases"][:2] == ["blocks", "lazy greedy (width 4)"] and sel.n_evaluations <= 40
