"""Scoring in rounds until the decision is resolved: an estimation budget set by the decision, not a constant.

The design's masks are scored ``round_size`` at a time, in an order interleaved over strata (every prefix
of whole rounds holds each stratum in equal shares). After each round a surrogate is fitted on every
evaluation made so far (design masks and proposals: one pool, no mask scored twice) and, for each
requested number ``k`` of dropped layers, proposes the sets it predicts best (its top proposal first, then
runners-up from other searches); they are scored on the LLM as well and join the pool.

The stop rule. The decision for ``k`` is *resolved* after a round when

1. the top proposal is the same set in the last ``patience`` rounds (the surrogate's choice has settled), and
2. its measured value is the best measured value of every pooled mask with ``k`` layers dropped (nothing the
   LLM has seen, the runners-up included, beats it).

Scoring stops when every ``k`` is resolved (``"resolved"``), or when the cap on evaluations is reached or
the design is used up (``"cap"``); the cap counts design masks and proposals together and is never exceeded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from shapprune.estimators.budget import mask_key
from shapprune.estimators.regressors import Predictor
from shapprune.types import Game, Mask, Utility

Fit = Callable[[Mask, Utility, np.random.Generator], Predictor]
Propose = Callable[[Predictor, int, int], Mask]  # (predict, n_layers, k) -> bool[p, L]: kept layers, the best first


def interleave_by_size(masks: Mask) -> Mask:
    """``masks`` reordered round-robin over their kept-layer counts (first-seen order), each group's order kept."""
    masks = np.asarray(masks, dtype=bool)  # [m, L]
    sizes = masks.sum(axis=1)
    groups = [np.flatnonzero(sizes == s) for s in dict.fromkeys(sizes.tolist())]
    order = [g[i] for i in range(max((len(g) for g in groups), default=0)) for g in groups if i < len(g)]
    return masks[np.asarray(order, dtype=np.int64)].reshape(masks.shape)


@dataclass(frozen=True)
class StopRule:
    """How the rounds run: masks per round, the cap on evaluations, rounds a proposal must hold."""

    round_size: int
    cap: int
    patience: int = 2

    def __post_init__(self) -> None:
        if self.round_size < 1 or self.cap < 1 or self.patience < 1:
            raise ValueError(f"round_size, cap and patience must be at least 1, got {self}")


@dataclass(frozen=True)
class RoundRecord:
    """One round: its design masks, the evaluations made so far, each k's proposal and whether it is resolved."""

    index: int
    n_design: int
    n_evaluations: int
    proposals: dict[int, tuple[int, ...]]  # k -> the dropped layers proposed
    resolved: dict[int, bool]


@dataclass
class Pool:
    """Every evaluation made (in order), which part of the run asked for it, the rounds and why they stopped."""

    masks: list[np.ndarray] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # "design" | "proposal"
    rounds: list[RoundRecord] = field(default_factory=list)
    reason: str = ""

    @property
    def n_evaluations(self) -> int:
        return len(self.values)

    def arrays(self) -> tuple[Mask, Utility]:
        """``bool[n, L]`` masks and ``float[n]`` values."""
        n_layers = len(self.masks[0]) if self.masks else 0
        return np.asarray(self.masks, dtype=bool).reshape(-1, n_layers), np.asarray(self.values, dtype=np.float64)

    def add(self, game: Game, masks: Mask, source: str) -> None:
        """Score the masks of ``masks`` not in the pool yet (one game call) and add them."""
        seen = {mask_key(m) for m in self.masks}
        new = [m for m in np.asarray(masks, dtype=bool) if not (mask_key(m) in seen or seen.add(mask_key(m)))]
        if not new:
            return
        values = np.asarray(game(np.stack(new)), dtype=np.float64)
        self.masks.extend(new)
        self.values.extend(values.tolist())
        self.sources.extend([source] * len(new))

    def best(self, n_dropped: int) -> float:
        """The best finite measured value among pooled masks with ``n_dropped`` layers dropped."""
        vals = [v for m, v in zip(self.masks, self.values) if len(m) - m.sum() == n_dropped and np.isfinite(v)]
        return max(vals, default=-np.inf)

    def value(self, mask: np.ndarray) -> float:
        key = mask_key(mask)
        return next(v for m, v in zip(self.masks, self.values) if mask_key(m) == key)


def score_until_resolved(
    game: Game,
    design: Mask,
    n_drops: Sequence[int],
    fit: Fit,
    propose: Propose,
    rule: StopRule,
    rng: np.random.Generator,
) -> Pool:
    """Score ``design`` (``bool[m, L]``, in order) in rounds with one proposal per ``k`` after each, until the
    stop rule (module docstring) says every ``k`` in ``n_drops`` is resolved or the cap is reached."""
    design = np.asarray(design, dtype=bool)  # [m, L]
    n_layers, ks = design.shape[1], sorted({int(k) for k in n_drops})
    pool, history, start = Pool(), {k: [] for k in ks}, 0
    while True:
        room = rule.cap - pool.n_evaluations
        if room <= 0 or start >= len(design):
            pool.reason = "cap"
            return pool
        batch = design[start : start + min(rule.round_size, room)]
        start += len(batch)
        pool.add(game, batch, "design")
        masks, values = pool.arrays()
        finite = np.isfinite(values)
        predict = fit(masks[finite], values[finite], rng)
        proposed = {k: np.asarray(propose(predict, n_layers, k), dtype=bool).reshape(-1, n_layers) for k in ks}
        for k, rows in proposed.items():
            pool.add(game, rows[: max(0, rule.cap - pool.n_evaluations)], "proposal")
            history[k].append(mask_key(rows[0]))
        proposals = {k: rows[0] for k, rows in proposed.items()}
        resolved = {k: _resolved(pool, history[k], proposals[k], k, rule.patience) for k in ks}
        pool.rounds.append(
            RoundRecord(
                len(pool.rounds),
                len(batch),
                pool.n_evaluations,
                {k: tuple(int(i) for i in np.flatnonzero(~m)) for k, m in proposals.items()},
                resolved,
            )
        )
        if all(resolved.values()):
            pool.reason = "resolved"
            return pool


def _resolved(pool: Pool, history: list[bytes], proposal: np.ndarray, k: int, patience: int) -> bool:
    """The same proposal in the last ``patience`` rounds, measured, and the best measured k-set of the pool."""
    if len(history) < patience or len(set(history[-patience:])) != 1:
        return False
    if mask_key(proposal) not in {mask_key(m) for m in pool.masks}:
        return False  # the cap left it unmeasured
    return pool.value(proposal) >= pool.best(k)
