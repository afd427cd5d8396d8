"""A counting, caching, budget-enforcing wrapper around a game.

Every distinct mask costs one evaluation the first time it is asked for; asking again is free, and so
are masks whose value is known up front (e.g. the full model, whose ``ppl_ratio`` is 1). A query that
would exceed the budget raises :class:`BudgetExceeded` before anything is evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from shapprune.types import Game, Mask, Utility


class BudgetExceeded(RuntimeError):
    """The estimator asked for more distinct game evaluations than its budget."""


def mask_key(mask: np.ndarray) -> bytes:
    """Hashable key of one ``bool[L]`` mask."""
    return np.packbits(np.asarray(mask, dtype=bool)).tobytes()


def known_values(n_players: int, full: float | None = None, empty: float | None = None) -> dict[bytes, float]:
    """Values known without evaluating the game: the full and/or empty coalition."""
    out: dict[bytes, float] = {}
    if full is not None:
        out[mask_key(np.ones(n_players, bool))] = float(full)
    if empty is not None:
        out[mask_key(np.zeros(n_players, bool))] = float(empty)
    return out


@dataclass
class BudgetedGame:
    """``game`` limited to ``budget`` distinct evaluations (``None``: unlimited), with a value cache."""

    game: Game
    budget: int | None
    known: Mapping[bytes, float] = field(default_factory=dict)
    n_evaluations: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.n_players = self.game.n_players
        self._values: dict[bytes, float] = dict(self.known)
        self._scored: dict[bytes, tuple[np.ndarray, float]] = {}  # evaluated masks, in order

    @property
    def remaining(self) -> int | None:
        """Evaluations left (``None`` when unlimited)."""
        return None if self.budget is None else self.budget - self.n_evaluations

    def cost(self, masks: Mask) -> int:
        """How many evaluations ``masks`` would cost now (distinct masks not yet known)."""
        return len({mask_key(m) for m in masks} - self._values.keys())

    def affordable(self, masks: Mask) -> bool:
        """True when ``masks`` fit in the remaining budget."""
        return self.remaining is None or self.cost(masks) <= self.remaining

    def __call__(self, masks: Mask) -> Utility:
        masks = np.asarray(masks, dtype=bool)  # [n, L]
        if masks.ndim != 2 or masks.shape[1] != self.n_players:
            raise ValueError(f"masks must be bool[n, {self.n_players}], got shape {masks.shape}")
        keys = [mask_key(m) for m in masks]
        new: dict[bytes, int] = {}
        for row, key in enumerate(keys):
            if key not in self._values and key not in new:
                new[key] = row
        if self.remaining is not None and len(new) > self.remaining:
            raise BudgetExceeded(
                f"{len(new)} new evaluations requested with {self.remaining} of {self.budget} left; raise the budget"
            )
        if new:
            rows = np.fromiter(new.values(), dtype=np.int64)
            values = np.asarray(self.game(masks[rows]), dtype=np.float64)  # [n_new]
            self.n_evaluations += len(rows)
            for key, row, value in zip(new, rows, values):
                self._values[key] = float(value)
                self._scored[key] = (masks[row].copy(), float(value))
        return np.array([self._values[k] for k in keys])

    def scored(self) -> tuple[Mask, Utility]:
        """The masks evaluated on the game so far and their values, in evaluation order."""
        if not self._scored:
            return np.zeros((0, self.n_players), bool), np.zeros(0)
        masks, values = zip(*self._scored.values())
        return np.stack(masks), np.array(values)

    def free_values(self) -> dict[bytes, float]:
        """Every value this wrapper knows (known up front or already paid for)."""
        return dict(self._values)


def as_budgeted(game: Game, budget: int) -> BudgetedGame:
    """Wrap ``game`` with a fresh budget; a wrapped game keeps its cache (already-paid masks stay free)."""
    if budget < 1:
        raise ValueError(f"budget must be at least 1 evaluation, got {budget}")
    if isinstance(game, BudgetedGame):
        return BudgetedGame(game, budget, known=game.free_values())
    return BudgetedGame(game, budget)
