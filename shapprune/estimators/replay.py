"""Run an estimator in two halves: draw its design without the LLM, then replay it on the scored masks.

The pipeline scores masks in one stage (``score_masks``: checkpointed, prefix reuse, workers) and
estimates contributions in another. :func:`design` runs the estimator on a game that records every
mask asked for and answers with placeholders; :class:`ScoredGame` answers with the values that were
measured. Given the same generator seed the estimator asks for the same masks both times, as long as
what it asks for does not depend on the answers. That holds for every registered estimator except
the adaptive designs (``adaptive=True``: a pilot's answers steer the rest), which are refused here.
Estimators that ask for their whole design in one call stop at that call, so drawing costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from shapprune.config import ConfigError
from shapprune.estimators.base import EstimateResult
from shapprune.estimators.budget import BudgetedGame, known_values, mask_key
from shapprune.types import Mask, Utility


class MissingScore(ConfigError):
    """The estimator asked for a mask that was not scored (the design and the scores disagree)."""


SINGLE_CALL = frozenset({"paper", "surrogate_cv", "surrogate_shapley", "svarm"})  # ask for their whole design at once


class _Complete(Exception):
    """Raised by the recorder once a single-call estimator has asked for its design."""


class _Recorder:
    """A game that remembers the masks asked for and answers 0 for each (or stops after the first call)."""

    def __init__(self, n_players: int, stop_after_first: bool) -> None:
        self.n_players = n_players
        self.stop_after_first = stop_after_first
        self.asked: list[np.ndarray] = []

    def __call__(self, masks: Mask) -> Utility:
        self.asked.extend(np.asarray(masks, dtype=bool))
        if self.stop_after_first:
            raise _Complete
        return np.zeros(len(masks))


def _check_replayable(name: str, options: Mapping[str, Any]) -> None:
    if options.get("adaptive"):
        raise ValueError("an adaptive design depends on measured values and cannot be drawn ahead; set adaptive false")


def design(name: str, n_players: int, budget: int, rng: np.random.Generator, **options: Any) -> Mask:
    """The masks ``name`` would score with this generator: ``bool[m, L]``, distinct, in request order.

    The full model is known up front (it is the reference every utility is measured against), so it is
    never part of the design.
    """
    from shapprune.estimators import ESTIMATORS  # the registry imports this module's siblings

    _check_replayable(name, options)
    recorder = _Recorder(n_players, stop_after_first=name in SINGLE_CALL)
    game = BudgetedGame(recorder, None, known=known_values(n_players, full=0.0))
    try:
        ESTIMATORS[name](game, budget, rng, **options)
    except _Complete:
        pass
    if not recorder.asked:
        return np.zeros((0, n_players), dtype=bool)
    return np.stack(recorder.asked)  # the budgeted game passes on each new mask once


class ScoredGame:
    """A game answered from a table of scored masks (plus the known full-model value)."""

    def __init__(self, masks: Mask, values: Utility, full_value: float, source: str = "the scores table") -> None:
        masks = np.asarray(masks, dtype=bool)  # [m, L]
        self.n_players = masks.shape[1]
        self.source = source
        self._values = {mask_key(m): float(v) for m, v in zip(masks, np.asarray(values, dtype=np.float64))}
        self._values[mask_key(np.ones(self.n_players, bool))] = float(full_value)

    def __call__(self, masks: Mask) -> Utility:
        out = np.empty(len(masks))
        for row, mask in enumerate(np.asarray(masks, dtype=bool)):
            value = self._values.get(mask_key(mask))
            if value is None:
                bits = "".join("1" if b else "0" for b in mask)
                raise MissingScore(
                    f"{self.source} has no score for mask {bits}: the masks were drawn for other estimator "
                    "settings; rerun `dvc repro` (sample_masks and score_masks)"
                )
            out[row] = value
        return out


def replay(name: str, game: ScoredGame, budget: int, rng: np.random.Generator, **options: Any) -> EstimateResult:
    """Run ``name`` on already-scored masks; raises :class:`MissingScore` when the design differs."""
    from shapprune.estimators import ESTIMATORS

    _check_replayable(name, options)
    full = float(game(np.ones((1, game.n_players), dtype=bool))[0])
    budgeted = BudgetedGame(game, None, known=known_values(game.n_players, full=full))
    return ESTIMATORS[name](budgeted, budget, rng, **options)
