"""Screen-then-verify: screening evaluations are paid at their cost, the budget holds, and the choice is the game's."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.baselines.cost import sleb_cost
from shapprune.estimators.budget import BudgetedGame, mask_key
from shapprune.select import Screen, budgeted_select
from shapprune.select.screen import screened_greedy, screened_width
from shapprune.select.spend import Spend
from tests.select.test_budgeted import BlockGame, block_plus_singles, exhaustive


def noisy(game: BlockGame, scale: float, seed: int) -> BlockGame:
    """The same game with every layer's cost perturbed: a screen that ranks sets only roughly."""
    return BlockGame(game.cost + np.random.default_rng(seed).normal(0, scale, len(game.cost)), game.bonus)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_an_exact_screen_finds_the_exhaustive_best_at_a_quarter_of_slebs_cost(k):
    game = block_plus_singles()
    budget = int(sleb_cost(game.n_players, k) / 4)
    selection = budgeted_select(game, [k], budget, np.random.default_rng(0), screen=Screen(block_plus_singles(), 0.1))
    assert selection.chosen[k].dropped == exhaustive(block_plus_singles(), k)
    assert selection.costs[k].equivalent <= budget


@pytest.mark.parametrize("budget", [1, 3, 8, 20, 60])
@pytest.mark.parametrize("ks", [[2], [3, 6], [1, 4, 9]])
@pytest.mark.parametrize("cost", [0.1, 0.25])
def test_the_budget_counts_screening_at_its_cost_and_is_never_exceeded(budget, ks, cost):
    rng = np.random.default_rng(budget)
    game = BlockGame(rng.uniform(0.1, 1.0, 12), 0.2)
    screen = noisy(game, 0.2, budget)
    if budget < len(ks):
        with pytest.raises(ValueError, match="at least 1 evaluation per k searched"):
            budgeted_select(game, ks, budget, np.random.default_rng(1), screen=Screen(screen, cost))
        assert game.calls == screen.calls == 0
        return
    selection = budgeted_select(game, ks, budget, np.random.default_rng(1), screen=Screen(screen, cost))
    costs = selection.costs.values()
    assert game.calls + cost * screen.calls <= budget + 1e-9  # no mask asked twice on either, none beyond
    assert sum(c.evaluations for c in costs) == game.calls == selection.n_evaluations
    assert sum(c.screen_evaluations for c in costs) == screen.calls == selection.n_screen_evaluations
    assert sum(c.kept_layers for c in costs) == game.kept and sum(c.screen_kept_layers for c in costs) == screen.kept
    assert sum(c.equivalent for c in costs) == pytest.approx(game.calls + cost * screen.calls)
    assert sorted(selection.chosen) == ks


def test_the_choice_is_the_best_set_by_the_game_never_by_the_screen():
    game = block_plus_singles()
    screen = noisy(block_plus_singles(), 0.4, 0)  # misleading: its best sets are not the game's
    selection = budgeted_select(game, [5], 30, np.random.default_rng(0), screen=Screen(screen, 0.1))
    chosen = selection.chosen[5]
    measured = [c for c in selection.candidates if c.n_drop == 5]
    assert all(c.verified for c in measured)
    assert chosen.calibration == max(c.calibration for c in measured)
    assert chosen.calibration == pytest.approx(float(block_plus_singles()(chosen.mask[None])[0]))


def sleb_order(game: BlockGame, k: int) -> tuple[list[int], np.ndarray]:
    """SLEB's greedy removal on ``game``: every kept layer tried at every step; the order and the final mask."""
    keep, order = np.ones(game.n_players, dtype=bool), []
    for _ in range(k):
        kept = np.flatnonzero(keep)
        masks = np.repeat(keep[None], len(kept), axis=0)
        masks[np.arange(len(kept)), kept] = False
        order.append(int(kept[np.argmax(game(masks))]))
        keep[order[-1]] = False
    return order, keep


def test_the_screened_greedy_pass_makes_slebs_choices_on_the_game():
    game = BlockGame(np.random.default_rng(3).uniform(0.1, 1.0, 10), 0.15)
    _, sleb = sleb_order(game, 4)
    for screen, width in ((game, 1), (noisy(game, 0.5, 2), 10)):  # exact screen, narrow; any screen, full width
        spend = Spend(BudgetedGame(game, None), True, Screen(screen, 0.1))
        spend.limit = 10**6
        assert screened_greedy(spend, 10, 4, width) == 4
        assert mask_key(sleb) in spend.game.free_values()  # SLEB's 4-layer set, measured on the game
        assert spend.game.n_evaluations <= width * 4 and spend.screen.n_evaluations == sleb_cost(10, 4)
    tight = Spend(BudgetedGame(game, None), True, Screen(game, 0.1))
    tight.limit = 0.1 * (10 + 9) + 2  # two steps' screening and measuring, width 1
    assert screened_greedy(tight, 10, 4, 1) == 2 and tight.screen.n_evaluations == 19


def test_the_screened_greedy_is_as_wide_as_the_share_allows():
    assert screened_width(58, 30, 9, 0.1, 4) == 3  # 58 - 0.1 * (22 + 234) - 1 = 31.4: 3 a step for 9 steps
    assert screened_width(1000, 30, 9, 0.1, 4) == 4 and screened_width(5, 30, 9, 0.1, 4) == 1


def test_a_screen_is_deterministic_and_its_cost_must_be_a_fraction():
    screen = Screen(noisy(block_plus_singles(), 0.2, 1), 0.1)
    runs = [budgeted_select(block_plus_singles(), [3, 6], 30, np.random.default_rng(7), screen=screen) for _ in "ab"]
    assert [c.bits for c in runs[0].candidates] == [c.bits for c in runs[1].candidates]
    assert runs[0].notes == runs[1].notes
    with pytest.raises(ValueError, match=r"screen's cost must be in \(0, 1\)"):
        Screen(block_plus_singles(), 1.0)
