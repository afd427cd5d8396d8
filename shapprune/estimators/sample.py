"""A realised stratified sample of units: which units were drawn, from which stratum, in which phase."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shapprune.estimators.budget import BudgetedGame, mask_key
from shapprune.estimators.design import Stratum, sample_units, shapley_weights, unit_masks
from shapprune.types import Mask


@dataclass
class UnitSample:
    """Units drawn so far; ``stratum[j]``, ``lead[j]`` and ``phase[j]`` describe unit ``j``."""

    n_players: int
    strata: list[Stratum]
    stratum: np.ndarray = field(init=False)  # int[n_units]
    lead: np.ndarray = field(init=False)  # bool[n_units, L]
    phase: np.ndarray = field(init=False)  # int[n_units]

    def __post_init__(self) -> None:
        self.stratum = np.zeros(0, dtype=np.int64)
        self.lead = np.zeros((0, self.n_players), dtype=bool)
        self.phase = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.stratum)

    def counts(self) -> np.ndarray:
        """Units drawn per stratum: ``int[H]``."""
        return np.bincount(self.stratum, minlength=len(self.strata))

    def draw(self, targets: np.ndarray, rng: np.random.Generator, phase: int = 0) -> None:
        """Top every stratum up to ``targets[h]`` units with new units drawn without replacement."""
        have = self.counts()
        for h, st in enumerate(self.strata):
            extra = int(targets[h] - have[h])
            if extra <= 0:
                continue
            taken = {mask_key(m) for m in self.lead[self.stratum == h]}
            leads = sample_units(self.n_players, st, extra, rng, exclude=taken)
            self.stratum = np.concatenate([self.stratum, np.full(extra, h)])
            self.lead = np.concatenate([self.lead, leads])
            self.phase = np.concatenate([self.phase, np.full(extra, phase)])

    def masks(self) -> tuple[Mask, np.ndarray]:
        """Every coalition of every unit ``bool[m, L]`` and the unit each belongs to ``int[m]``."""
        blocks, owners = [], []
        for j, (h, lead) in enumerate(zip(self.stratum, self.lead)):
            st = self.strata[h]
            blocks.append(unit_masks(lead[None], st))
            owners.append(np.full(st.masks_per_unit, j))
        if not blocks:
            return np.zeros((0, self.n_players), bool), np.zeros(0, np.int64)
        return np.concatenate(blocks), np.concatenate(owners)


def unit_costs(strata: list[Stratum], game: BudgetedGame) -> np.ndarray:
    """Evaluations per unit of each stratum (a single-unit stratum may be partly known, e.g. the full model)."""
    out = np.array([st.masks_per_unit for st in strata], dtype=np.float64)
    for h, st in enumerate(strata):
        if st.population == 1:
            lead = np.zeros((1, game.n_players), bool) if st.size == 0 else np.ones((1, game.n_players), bool)
            out[h] = game.cost(unit_masks(lead, st))
    return out


def unit_terms(masks: Mask, owner: np.ndarray, values: np.ndarray, n_units: int) -> np.ndarray:
    """``sum over a unit's coalitions of v(S) g_i(S)`` for every unit and player: ``float[n_units, L]``."""
    out = np.zeros((n_units, masks.shape[1]))
    np.add.at(out, owner, values[:, None] * shapley_weights(masks))
    return out


def floors(strata: list[Stratum], min_units: int) -> np.ndarray:
    """At least ``min_units`` units per stratum, or all of a smaller stratum."""
    return np.array([min(st.population, min_units) for st in strata], dtype=np.int64)


def floor_cost(strata: list[Stratum], costs: np.ndarray, min_units: int) -> float:
    """Evaluations that :func:`floors` costs."""
    return float(np.sum(costs * floors(strata, min_units)))
