"""Coalition-size strata, sampling units and their allocation: the design behind the unbiased estimators.

Shapley values as stratum means: with ``g_i(S) = [i in S] / |S| - [i not in S] / (L - |S|)``,

    phi_i = sum_s  1 / C(L, s) * sum_{|S| = s} v(S) g_i(S),

so a uniform sample of size-``s`` coalitions estimates each stratum's term for every player at once
(the Stratified SVARM representation, Kolpaczki et al. 2024). A *unit* is one coalition, or with
``paired`` a coalition and its complement (antithetic; the complement of a size-``s`` set has size
``L - s``). Units are drawn without replacement within a stratum, so inclusion probabilities are known.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shapprune.estimators.budget import mask_key
from shapprune.types import Mask

ENUMERATE_UP_TO = 50_000  # strata with at most this many units are enumerated, larger ones rejection-sampled


@dataclass(frozen=True)
class Stratum:
    """Units whose lead coalition keeps ``size`` players (plus its complement when ``paired``)."""

    size: int
    paired: bool
    population: int  # number of distinct units
    coef: float  # 1 / C(L, size): weight of the stratum's coalition sum in phi

    @property
    def masks_per_unit(self) -> int:
        return 2 if self.paired else 1

    def is_middle(self, n_players: int) -> bool:
        """A paired stratum whose complements have the same size (canonical lead contains player 0)."""
        return self.paired and 2 * self.size == n_players


def make_strata(n_players: int, paired: bool) -> list[Stratum]:
    """Strata of every coalition size 0..L (unpaired) or 0..L//2 (paired)."""
    out = []
    for s in range(n_players // 2 + 1 if paired else n_players + 1):
        count = math.comb(n_players, s)
        population = count // 2 if paired and 2 * s == n_players else count
        out.append(Stratum(s, paired, population, 1.0 / count))
    return out


def unit_masks(leads: Mask, stratum: Stratum) -> Mask:
    """The coalitions of each unit: ``bool[n * masks_per_unit, L]`` (lead, then complement)."""
    if not stratum.paired:
        return leads
    return np.stack([leads, ~leads], axis=1).reshape(-1, leads.shape[1])


def shapley_weights(masks: Mask) -> np.ndarray:
    """``g_i(S)`` for every coalition and player: ``float[n, L]``."""
    n_players = masks.shape[1]
    size = masks.sum(axis=1, keepdims=True).astype(np.float64)  # [n, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = np.where(masks, 1.0 / size, 0.0)  # [n, L]
        outside = np.where(masks, 0.0, 1.0 / (n_players - size))  # [n, L]
    return inside - outside


def _canonical(leads: Mask, stratum: Stratum) -> Mask:
    if stratum.is_middle(leads.shape[1]):
        return np.where(leads[:, :1], leads, ~leads)
    return leads


def _all_units(n_players: int, stratum: Stratum) -> Mask:
    s = stratum.size
    if stratum.is_middle(n_players):  # lead contains player 0
        combos = [(0, *c) for c in itertools.combinations(range(1, n_players), s - 1)]
    else:
        combos = list(itertools.combinations(range(n_players), s))
    out = np.zeros((len(combos), n_players), dtype=bool)
    for row, combo in enumerate(combos):
        out[row, list(combo)] = True
    return out


def sample_units(
    n_players: int, stratum: Stratum, count: int, rng: np.random.Generator, exclude: set[bytes] | None = None
) -> Mask:
    """``count`` distinct lead masks of ``stratum`` drawn uniformly without replacement, none in ``exclude``."""
    exclude = exclude or set()
    if count == 0:
        return np.zeros((0, n_players), dtype=bool)
    if stratum.population <= ENUMERATE_UP_TO:
        pool = _all_units(n_players, stratum)
        if exclude:
            pool = pool[[mask_key(m) not in exclude for m in pool]]
        if count > len(pool):
            raise ValueError(f"stratum of size {stratum.size}: {count} units asked, {len(pool)} left")
        return pool[np.sort(rng.choice(len(pool), size=count, replace=False))]
    seen: dict[bytes, np.ndarray] = {}
    while len(seen) < count:
        keys = rng.random((2 * (count - len(seen)), n_players))  # [m, L]
        leads = _canonical(keys.argsort(axis=1).argsort(axis=1) < stratum.size, stratum)
        for lead in leads:
            key = mask_key(lead)
            if key not in exclude and len(seen) < count:
                seen.setdefault(key, lead)
    return np.stack(list(seen.values()))


def prior_weights(strata: Sequence[Stratum], n_players: int) -> np.ndarray:
    """Neyman weights when every coalition's value has the same spread: ``c_h N_h sd(unit term)``.

    ``E[g_i(S)^2] = 1 / (s (L - s))`` for ``|S| = s``, so extreme sizes weigh most.
    """
    out = np.zeros(len(strata))
    for h, st in enumerate(strata):
        s = st.size
        second = 1.0 / (s * (n_players - s)) if 0 < s < n_players else 1.0 / n_players**2
        out[h] = st.coef * st.population * math.sqrt(st.masks_per_unit * second)
    return out


def allocate(weights: np.ndarray, costs: np.ndarray, caps: np.ndarray, floor: np.ndarray, budget: float) -> np.ndarray:
    """Units per stratum minimising ``sum_h w_h^2 / n_h`` with ``sum_h costs_h n_h <= budget``.

    Starts from ``floor`` (raises when even that does not fit), never exceeds ``caps``, and adds units
    greedily by variance reduction per evaluation (Neyman allocation with costs, in integers).
    """
    n = np.minimum(np.asarray(floor, dtype=np.int64), caps)
    left = budget - float(np.sum(costs * n))
    if left < 0:
        raise ValueError(f"budget of {budget:g} evaluations is below the {budget - left:g} this design needs at least")

    def gain(h: int) -> float:
        if n[h] == 0:
            return math.inf if weights[h] > 0 else 0.0
        return weights[h] ** 2 * (1.0 / n[h] - 1.0 / (n[h] + 1)) / max(costs[h], 1e-9)

    heap = [(-gain(h), h) for h in range(len(n)) if n[h] < caps[h]]
    heapq.heapify(heap)
    while heap:
        neg, h = heapq.heappop(heap)
        if costs[h] > left or neg == 0:
            continue
        n[h] += 1
        left -= costs[h]
        if n[h] < caps[h]:
            heapq.heappush(heap, (-gain(h), h))
    return n
