"""Iterative pruning: drop the ``step`` lowest layers, re-estimate contributions on what is left, repeat.

A one-shot Shapley ranking credits redundant layers poorly: two layers that can stand in for each other
share their joint worth, so both look weak and both get dropped. Re-estimating after each removal lets the
survivor's contribution rise once its stand-in is gone. The game on the remaining layers is the original
game with the removed layers fixed absent, which is exactly the smaller model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shapprune.estimators.base import EstimateResult
from shapprune.estimators.budget import BudgetedGame, known_values
from shapprune.types import Game, Mask, Utility


@dataclass
class RestrictedGame:
    """``game`` with only the ``players`` (indices into the full mask) free; every other player is absent."""

    game: Game
    players: np.ndarray  # int[p]
    n_full: int

    @property
    def n_players(self) -> int:
        return len(self.players)

    def __call__(self, masks: Mask) -> Utility:
        full = np.zeros((len(masks), self.n_full), dtype=bool)  # [n, L]
        full[:, self.players] = np.asarray(masks, dtype=bool)
        return self.game(full)


@dataclass(frozen=True)
class IterativeResult:
    """Layers in removal order, with each round's estimate on the layers left at its start."""

    order: list[int]
    rounds: list[EstimateResult] = field(compare=False)
    players: list[list[int]]  # the layers still present at the start of each round
    n_evaluations: int

    def dropped(self, k: int) -> list[int]:
        """The first ``k`` removed layers (sorted)."""
        if not 1 <= k <= len(self.order):
            raise ValueError(f"iterative pruning removed {len(self.order)} layers; ask for 1..{len(self.order)}")
        return sorted(self.order[:k])


def iterative_removal(
    game: Game,
    n_drop: int,
    estimator: str,
    budget_per_round: int,
    rng: np.random.Generator,
    *,
    step: int = 1,
    full_value: float | None = None,
    **options: Any,
) -> IterativeResult:
    """Remove ``n_drop`` players ``step`` at a time, each round re-estimating on the players left.

    ``full_value`` (e.g. 1.0 for a PPL ratio) is the value of the full coalition when known; the value of
    each smaller model is paid for once and then free in later rounds (one shared cache).
    """
    from shapprune.estimators import estimate

    n = game.n_players
    if not 1 <= n_drop < n:
        raise ValueError(f"cannot drop {n_drop} of {n} layers iteratively; choose 1..{n - 1}")
    if step < 1:
        raise ValueError(f"step must be at least 1 layer per round, got {step}")
    shared = BudgetedGame(game, None, known=known_values(n, full=full_value))
    keep = np.ones(n, dtype=bool)
    order: list[int] = []
    rounds: list[EstimateResult] = []
    players_log: list[list[int]] = []
    while len(order) < n_drop:
        players = np.flatnonzero(keep)
        result = estimate(estimator, RestrictedGame(shared, players, n), budget_per_round, rng, **options)
        take = min(step, n_drop - len(order))
        removed = [int(players[i]) for i in result.ranking()[:take]]
        order.extend(removed)
        keep[removed] = False
        rounds.append(result)
        players_log.append(players.tolist())
    return IterativeResult(order, rounds, players_log, shared.n_evaluations)
