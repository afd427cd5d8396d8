"""Budgeted verification on the LLM with active refinement: the loop that turns candidates into a choice.

Each round, for every requested ``n_drop``: propose candidates from every source on the current
surrogate, verify the most promising ones not verified yet (the first proposal of each source, then by
predicted utility, or measured utility when the mask was already scored) on the calibration game and, when
given, on the validation game, within that round's share of the budget. The verified calibration values
join the surrogate's training data and the surrogate is refitted before the next round. Finally the
verified candidate with the best validation utility (ties and no validation game: calibration) is chosen.

The budget counts distinct LLM evaluations, calibration and validation together; masks whose calibration
value is known up front (already scored, or the full model) cost nothing there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from shapprune.estimators.budget import BudgetedGame, mask_key
from shapprune.estimators.regressors import Predictor
from shapprune.select.blocks import best_blocks
from shapprune.select.candidates import SOURCES, Candidate, best_scored, ranking_mask
from shapprune.select.result import Selection
from shapprune.select.search import beam_search, greedy_removal
from shapprune.types import Game, Mask, Utility

Fit = Callable[[Mask, Utility, np.random.Generator], Predictor]


@dataclass(frozen=True)
class SearchConfig:
    """How much to search and how much LLM time to spend verifying."""

    budget: int = 128  # distinct LLM evaluations (calibration + validation) over every n_drop and round
    per_k_candidates: int = 8  # proposals per search source, n_drop and round
    beam_width: int = 32
    n_blocks: int = 4  # contiguous blocks proposed per n_drop and round
    rounds: int = 3  # verification rounds; the surrogate is refitted between rounds

    def __post_init__(self) -> None:
        for name in ("budget", "per_k_candidates", "beam_width", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"select.{name} must be at least 1, got {getattr(self, name)}")
        if self.n_blocks < 0:
            raise ValueError(f"select.n_blocks must be at least 0, got {self.n_blocks}")


def budget_shares(budget: int, n_drops: Sequence[int]) -> dict[int, int]:
    """Split ``budget`` over ``n_drops`` in proportion to ``k`` (more layers dropped: a larger space to search)."""
    total = sum(n_drops)
    shares = {k: budget * k // total for k in n_drops}
    for k in sorted(n_drops, reverse=True)[: budget - sum(shares.values())]:
        shares[k] += 1
    return shares


class _Search:
    """State of one search: the candidate pool, the budgeted games and the surrogate's training data."""

    def __init__(
        self,
        calibration: Game,
        validation: Game | None,
        scored_masks: Mask,
        scored_values: Utility,
        known: Mapping[bytes, float],
        config: SearchConfig,
    ) -> None:
        self.n_layers = calibration.n_players
        finite = np.isfinite(scored_values)
        self.scored_masks = np.asarray(scored_masks, dtype=bool)[finite].reshape(-1, self.n_layers)
        self.scored_values = np.asarray(scored_values, dtype=np.float64)[finite]
        free = dict(known) | {mask_key(m): float(v) for m, v in zip(self.scored_masks, self.scored_values)}
        self.calibration = BudgetedGame(calibration, None, known=free)
        self.validation = None if validation is None else BudgetedGame(validation, None)
        self.config = config
        self.pool: dict[bytes, Candidate] = {}

    def spent(self) -> int:
        return self.calibration.n_evaluations + (0 if self.validation is None else self.validation.n_evaluations)

    def cost(self, mask: np.ndarray, pending: set[bytes]) -> int:
        """LLM evaluations that verifying ``mask`` adds to what is already known or ``pending``."""
        if mask_key(mask) in pending:
            return 0
        row = mask[None]
        return self.calibration.cost(row) + (0 if self.validation is None else self.validation.cost(row))

    def measured(self) -> tuple[Mask, Utility]:
        """Training data of the surrogate: the masks scored up front plus every calibration value bought since."""
        masks, values = self.calibration.scored()
        return np.concatenate([self.scored_masks, masks]), np.concatenate([self.scored_values, values])

    def propose(self, predict: Predictor, contributions: np.ndarray, n_drop: int, rnd: int) -> list[Candidate]:
        """This round's proposals for ``n_drop``, verification order first (see the module docstring)."""
        cfg, n = self.config, self.n_layers
        done = {key for key, c in self.pool.items() if c.verified}
        beam, _ = beam_search(predict, n, n_drop, max(cfg.beam_width, cfg.per_k_candidates))
        blocks, _ = best_blocks(predict, n, n_drop, n - n_drop + 1)
        measured, measured_values = self.measured()
        scored, _ = best_scored(measured, measured_values, n_drop, cfg.per_k_candidates, done)
        by_source = {
            "ranking": ranking_mask(contributions, n, n_drop),
            "greedy": greedy_removal(predict, n, n_drop)[0],
            "beam": _fresh(beam, done, cfg.per_k_candidates),
            "block": _fresh(blocks, done, cfg.n_blocks),
            "scored": scored,
        }
        proposed: dict[bytes, Candidate] = {}
        firsts: list[bytes] = []  # the ranking's mask, and in round 0 the best of every source
        for source in SOURCES:
            masks = by_source[source]
            values = predict(masks) if len(masks) else np.zeros(0)
            for i, (mask, value) in enumerate(zip(masks, values)):
                cand = self._note(mask, source, float(value), rnd)
                if not cand.verified:
                    proposed.setdefault(cand.key, cand)
                    if i == 0 and (rnd == 0 or source == "ranking") and cand.key not in firsts:
                        firsts.append(cand.key)
        known = self.calibration.free_values()
        best = max((c.calibration for c in self.pool.values() if c.verified and c.n_drop == n_drop), default=-math.inf)
        # a mask already measured below the best verified one cannot win on calibration: not worth a validation run
        useful = [c for c in proposed.values() if not known.get(c.key, math.inf) < best]
        first = [c for c in useful if c.key in firsts]
        rest = sorted((c for c in useful if c.key not in firsts), key=lambda c: (-_promise(c, known.get(c.key)), c.key))
        return sorted(first, key=lambda c: firsts.index(c.key)) + rest

    def _note(self, mask: np.ndarray, source: str, predicted: float, rnd: int) -> Candidate:
        """Add ``mask`` to the pool (or a new source to it); unverified candidates take the new prediction."""
        key = mask_key(mask)
        cand = self.pool.get(key)
        if cand is None:
            cand = self.pool[key] = Candidate(mask.copy(), [source], predicted, rnd)
        elif source not in cand.sources:
            cand.sources.append(source)
        if not cand.verified:
            cand.predicted, cand.round = predicted, rnd
        return cand

    def verify(self, chosen: list[Candidate]) -> None:
        """Measure ``chosen`` on the calibration (and validation) game, all masks in one call each."""
        if not chosen:
            return
        masks = np.stack([c.mask for c in chosen])
        cal = self.calibration(masks)
        val = self.validation(masks) if self.validation is not None else np.full(len(chosen), math.nan)
        for c, a, b in zip(chosen, cal, val):
            c.calibration, c.validation, c.verified = float(a), float(b), True


def select_subsets(
    calibration: Game,
    n_drops: Sequence[int],
    contributions: np.ndarray,
    scored_masks: Mask,
    scored_values: Utility,
    fit: Fit,
    rng: np.random.Generator,
    validation: Game | None = None,
    predict: Predictor | None = None,
    config: SearchConfig = SearchConfig(),
    known: Mapping[bytes, float] | None = None,
) -> Selection:
    """Choose the layers to drop for every ``k`` in ``n_drops`` by searching subsets and verifying on the LLM.

    ``contributions`` (``float[L]``) give the ranking proposal; ``scored_masks``/``scored_values`` are the
    masks already measured on the calibration game (free); ``fit(masks, values, rng) -> predict`` refits the
    surrogate between rounds; ``predict`` is the round-0 surrogate (default: ``fit`` on the scored masks);
    ``known`` maps :func:`mask_key` to calibration values known without evaluation (e.g. the full model).
    """
    n_layers = calibration.n_players
    ks = sorted({int(k) for k in n_drops})
    bad = [k for k in ks if not 1 <= k < n_layers]
    if bad or not ks:
        raise ValueError(f"select.n_drops: {bad or 'empty'} outside [1, {n_layers - 1}] for {n_layers} layers")
    if validation is not None and validation.n_players != n_layers:
        raise ValueError("select: the validation game has another number of layers than the calibration game")
    state = _Search(calibration, validation, scored_masks, scored_values, known or {}, config)
    if predict is None:
        predict = fit(*state.measured(), rng)
    shares = budget_shares(config.budget, ks)
    spent = dict.fromkeys(ks, 0)
    fitted_on = len(state.measured()[1])
    for rnd in range(config.rounds):
        if rnd > 0 and len(state.measured()[1]) > fitted_on:  # refit only when something new was measured
            predict = fit(*state.measured(), rng)
            fitted_on = len(state.measured()[1])
        picked: list[Candidate] = []
        pending: set[bytes] = set()
        for k in ks:
            allowance = (shares[k] - spent[k]) // (config.rounds - rnd)
            for cand in state.propose(predict, contributions, k, rnd):
                cost = state.cost(cand.mask, pending)
                if cost > allowance:
                    continue
                allowance -= cost
                spent[k] += cost
                pending.add(cand.key)
                picked.append(cand)
        state.verify(picked)
    chosen, chosen_by = {}, {}
    for k in ks:
        chosen[k], chosen_by[k] = _choose([c for c in state.pool.values() if c.n_drop == k], validation is not None)
    return Selection(
        n_layers=n_layers,
        candidates=list(state.pool.values()),
        chosen=chosen,
        chosen_by=chosen_by,
        n_calibration_evaluations=state.calibration.n_evaluations,
        n_validation_evaluations=0 if state.validation is None else state.validation.n_evaluations,
        budget=config.budget,
        rounds=config.rounds,
        kept_layers=int(state.calibration.scored()[0].sum())
        + (0 if state.validation is None else int(state.validation.scored()[0].sum())),
    )


def _fresh(masks: Mask, done: set[bytes], n: int) -> Mask:
    """The first ``n`` rows of ``masks`` not in ``done``."""
    rows = [i for i, m in enumerate(masks) if mask_key(m) not in done][:n]
    return masks[rows].reshape(len(rows), masks.shape[1])


def _promise(c: Candidate, known: float | None) -> float:
    """How good a candidate looks before verification: its measured calibration value if known, else predicted."""
    return known if known is not None and math.isfinite(known) else c.predicted


def _choose(cands: list[Candidate], by_validation: bool) -> tuple[Candidate, str]:
    """Best verified candidate by validation (ties: calibration), else by calibration, else by prediction."""
    verified = sorted((c for c in cands if c.verified), key=lambda c: c.key)
    if verified:
        if by_validation:
            return max(verified, key=lambda c: (_finite(c.validation), _finite(c.calibration))), "validation"
        return max(verified, key=lambda c: _finite(c.calibration)), "calibration"
    return max(sorted(cands, key=lambda c: c.key), key=lambda c: _finite(c.predicted)), "predicted"


def _finite(x: float) -> float:
    """NaN sorts last."""
    return x if math.isfinite(x) or x == math.inf else -math.inf
