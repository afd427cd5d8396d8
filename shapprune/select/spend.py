"""What a budgeted search pays and how it plans to: the plan, a counting game with a per-``k`` limit and,
optionally, a cheaper screen."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shapprune.estimators.budget import BudgetedGame, mask_key
from shapprune.select.moves import swaps
from shapprune.types import Game, Mask, Utility


@dataclass(frozen=True)
class BudgetPlan:
    """How a budgeted search spends each ``k``'s share."""

    greedy_width: int = 4  # lazy greedy: candidates measured per step after the first
    min_width: int = 2  # the narrowest lazy greedy worth running (narrower: the leave-one-out pass alone)
    block_share: float = 0.6  # at most this fraction of a k's share on the coarse block scan, and
    shrink_blocks: bool = True  # less (down to min_blocks) when that fraction leaves no room for the lazy greedy
    min_blocks: int = 4  # the scan's floor: below it the scan keeps block_share and the lazy greedy is skipped
    min_swaps: int = 8  # the leave-one-out pass runs only if it leaves this many evaluations for swaps
    batch: int = 4  # swap moves measured per hill-climbing step
    ridge: float = 1e-2  # ridge penalty of the move-ranking model
    close: float = 0.01  # runner-up within this log-utility (about 1 % perplexity): the choice is close
    screen_moves: int = 32  # with a screen: swap moves screened per neighbourhood at most (the ridge model's best)

    def __post_init__(self) -> None:
        if not 0 < self.block_share <= 1:
            raise ValueError(f"select: block_share must be in (0, 1], got {self.block_share}")
        if not 1 <= self.min_width <= self.greedy_width:
            raise ValueError(f"select: min_width must be in [1, greedy_width], got {self.min_width}")
        if self.batch < 1 or self.min_swaps < 0 or self.min_blocks < 0:
            raise ValueError("select: batch must be at least 1, min_swaps and min_blocks at least 0")


@dataclass(frozen=True)
class Screen:
    """A cheaper copy of the game (the same model on fewer windows) and one evaluation's cost in full evaluations."""

    game: Game
    cost: float  # tokens per screening evaluation / tokens per full evaluation, in (0, 1)

    def __post_init__(self) -> None:
        if not 0 < self.cost < 1:
            raise ValueError(f"select: a screen's cost must be in (0, 1) of a full evaluation, got {self.cost}")


class Spend:
    """A budgeted game with a per-``k`` limit, the transform of its values and the cost of what it measured.

    With a :class:`Screen`, its evaluations are paid from the same budget, each at ``screen.cost`` of a full one.
    """

    def __init__(self, game: BudgetedGame, log_utility: bool, screen: Screen | None = None) -> None:
        self.game, self.log_utility, self.limit = game, log_utility, 0.0
        self.screen = None if screen is None else BudgetedGame(screen.game, None)
        self.screen_cost = 0.0 if screen is None else screen.cost

    def spent(self) -> float:
        """Full evaluations plus screening evaluations at their cost."""
        return self.game.n_evaluations + (self.screen_cost * self.screen.n_evaluations if self.screen else 0.0)

    def room(self) -> float:
        """What is left under the limit, in full evaluations."""
        return self.limit - self.spent()

    def left(self) -> int:
        """Full evaluations that still fit under the limit."""
        return math.floor(self.room() + 1e-9)

    def target(self, values: Utility) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        return np.log(np.maximum(v, 1e-30)) if self.log_utility else v

    def measure(self, masks: Mask, limit: int | None = None) -> int:
        """Measure the first unknown rows of ``masks`` that fit in what is left (and in ``limit``); returns how
        many new evaluations."""
        known = self.game.free_values()
        room = max(self.left(), 0) if limit is None else max(min(self.left(), limit), 0)
        fresh = list({mask_key(m): m for m in masks if mask_key(m) not in known}.values())[:room]
        if fresh:
            self.game(np.stack(fresh))
        return len(fresh)

    def screen_measure(self, masks: Mask, whole: bool = False) -> int:
        """Screen the unknown rows of ``masks`` that fit in what is left (``whole``: all of them or none);
        returns how many new screening evaluations."""
        known = self.screen.free_values()
        fresh = list({mask_key(m): m for m in masks if mask_key(m) not in known}.values())
        fit = max(math.floor(self.room() / self.screen_cost + 1e-9), 0)
        if whole and len(fresh) > fit:
            return 0
        fresh = fresh[:fit]
        if fresh:
            self.screen(np.stack(fresh))
        return len(fresh)

    def screen_target(self, masks: Mask) -> np.ndarray:
        """The target of screened ``masks`` (each must be screened already)."""
        values = self.screen.free_values()
        return self.target([values[mask_key(m)] for m in masks])

    def table(self, n_drop: int | None = None, game: BudgetedGame | None = None) -> tuple[Mask, np.ndarray]:
        """Every mask with a known value on ``game`` (default: the game; optionally only those dropping
        ``n_drop``) and its target."""
        game = game or self.game
        values = game.free_values()
        masks = [np.unpackbits(np.frombuffer(key, np.uint8))[: game.n_players].astype(bool) for key in values]
        masks = np.stack(masks) if masks else np.zeros((0, game.n_players), bool)
        y = self.target(np.fromiter(values.values(), np.float64, len(values)))
        if n_drop is not None:
            rows = (~masks).sum(axis=1) == n_drop
            masks, y = masks[rows], y[rows]
        finite = np.isfinite(y)
        return masks[finite], y[finite]

    def frontier(self, k: int) -> tuple[float, Mask, np.ndarray] | None:
        """The best measured ``k``-set's target, its swap moves and which of them are unmeasured (None: no set)."""
        masks, y = self.table(k)
        if not len(masks):
            return None
        moves = swaps(masks[int(np.argmax(y))])  # [k (L - k), L]
        known = self.game.free_values()
        return float(y.max()), moves, np.array([mask_key(m) not in known for m in moves])

    def screen_table(self, n_drop: int | None = None) -> tuple[Mask, np.ndarray]:
        """:meth:`table` of the screen."""
        return self.table(n_drop, self.screen)
