"""Scoring in rounds until the decision is resolved: an estimation budget set by the decision, not a constant.

The design's masks are scored ``round_size`` at a time, in an order interleaved over strata (every prefix
of whole rounds holds each stratum in equal shares). After each round a surrogate is fitted on every
evaluation made so far (design masks and proposals: one pool, no mask scored twice) and, for each
requested number ``k`` of dropped layers, proposes the sets it predicts best (its top proposal first, then
runners-up from other searches); they are scored on the LLM as well and join the pool.

The stop rule. After a round, the surrogate *agrees* with the LLM on ``k`` when its top proposal, measured,
is within ``tolerance`` (relative) of the best value measured for any pooled mask with ``k`` layers dropped
(the runners-up and the design's masks included): what the surrogate thinks best is, within the noise, the
best the LLM has seen. The decision for ``k`` is *resolved* when it has agreed in the last ``patience``
rounds. A surrogate that is still learning proposes sets that measure worse (they join the pool and teach
it); one that guesses at random agrees only by chance, ``patience`` times in a row.

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
    tolerance: float = 0.0  # relative: the top proposal agrees when within this share of the best measured value

    def __post_init__(self) -> None:
        if self.round_size < 1 or self.cap < 1 or self.patience < 1 or self.tolerance < 0:
            raise ValueError(f"round_size, cap and patience must be at least 1 and tolerance at least 0, got {self}")


@dataclass(frozen=True)
class RoundRecord:
    """One round: its design masks, the evaluations made so far, each k's top proposal, the best k-set measured
    (both as dropped layers), whether they agree within the tolerance and whether the decision is resolved."""

    index: int
    n_design: int
    n_evaluations: int
    proposals: dict[int, tuple[int, ...]]  # k -> the dropped layers of the surrogate's top proposal
    best: dict[int, tuple[int, ...]]  # k -> the dropped layers of the best k-set measured so far
    agrees: dict[int, bool]
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

    def best(self, n_dropped: int) -> tuple[np.ndarray | None, float]:
        """The pooled mask with ``n_dropped`` layers dropped of the best finite value (first of ties), and it."""
        rows = [(v, i) for i, (m, v) in enumerate(zip(self.masks, self.values)) if len(m) - m.sum() == n_dropped]
        rows = [(v, i) for v, i in rows if np.isfinite(v)]
        if not rows:
            return None, -np.inf
        value, index = max(rows, key=lambda r: (r[0], -r[1]))
        return self.masks[index], value

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
    pool, agreed, start = Pool(), {k: [] for k in ks}, 0
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
            agreed[k].append(_agrees(pool, rows[0], k, rule.tolerance))
        resolved = {k: len(agreed[k]) >= rule.patience and all(agreed[k][-rule.patience :]) for k in ks}
        pool.rounds.append(
            RoundRecord(
                len(pool.rounds),
                len(batch),
                pool.n_evaluations,
                {k: _dropped(rows[0]) for k, rows in proposed.items()},
                {k: _dropped(pool.best(k)[0]) for k in ks},
                {k: agreed[k][-1] for k in ks},
                resolved,
            )
        )
        if all(resolved.values()):
            pool.reason = "resolved"
            return pool


def _agrees(pool: Pool, top: np.ndarray, k: int, tolerance: float) -> bool:
    """The top proposal was measured (the cap may leave it unmeasured) and is within ``tolerance`` of the best."""
    if mask_key(top) not in {mask_key(m) for m in pool.masks}:
        return False
    value, best = pool.value(top), pool.best(k)[1]
    return bool(np.isfinite(value) and value >= best - tolerance * abs(best))


def _dropped(mask: np.ndarray | None) -> tuple[int, ...]:
    return () if mask is None else tuple(int(i) for i in np.flatnonzero(~mask))
