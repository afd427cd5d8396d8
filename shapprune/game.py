"""Games ``value(masks: bool[n, L]) -> float[n]``: the LLM layer game and closed-form test games."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from shapprune.prefix import PrefixScorer, full_and_scorer, nlls_by_row
from shapprune.scoring import NLL, masked_nll, utility_from_nll
from shapprune.surgery import num_layers
from shapprune.types import Mask, TokenWindows, Utility


@dataclass
class LayerGame:
    """Players are decoder layers; the value of a mask is the model's quality with only those layers.

    With ``prefix_reuse`` the masks of a call are scored in trie order, each forward starting from the states of
    the full model (pinned when the game is made, by the forward that gives ``full``) or of an earlier mask, kept
    across calls (:mod:`shapprune.prefix`; values bit-identical to scoring each mask whole). The model's
    weights must not change between calls.
    """

    model: nn.Module
    windows: TokenWindows
    utility: str = "ppl_ratio"
    batch_size: int = 16
    calls: int = 0
    prefix_reuse: bool = False
    cache_mib: float = 512.0
    full: NLL = field(init=False)
    scorer: PrefixScorer | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.n_players = num_layers(self.model)
        self.full, self.scorer = full_and_scorer(
            self.model, self.windows, self.batch_size, self.cache_mib, self.prefix_reuse
        )

    def nll(self, mask: np.ndarray) -> NLL:
        """NLL of one mask (counts as one LLM evaluation)."""
        self.calls += 1
        if self.scorer is None:
            return masked_nll(self.model, self.windows, mask, self.batch_size)
        return self.scorer.score(mask)

    def __call__(self, masks: Mask) -> Utility:
        nlls = nlls_by_row(np.asarray(masks, dtype=bool), self.nll, trie=self.scorer is not None)  # masks: [n, L]
        return np.array([utility_from_nll(n, self.full, self.utility) for n in nlls])


@dataclass
class AdditiveGame:
    """``v(S) = sum_{i in S} w_i``; the Shapley value of player i is ``w_i``."""

    weights: np.ndarray

    @property
    def n_players(self) -> int:
        return len(self.weights)

    def __call__(self, masks: Mask) -> Utility:
        return masks.astype(float) @ self.weights

    def shapley(self) -> np.ndarray:
        return np.asarray(self.weights, float)


@dataclass
class PairwiseGame:
    """``v(S) = sum_i w_i s_i + sum_{i<j} W_ij s_i s_j``; Shapley ``phi_i = w_i + 1/2 sum_j W_ij``."""

    weights: np.ndarray
    interactions: np.ndarray  # symmetric [L, L], zero diagonal

    @property
    def n_players(self) -> int:
        return len(self.weights)

    def __call__(self, masks: Mask) -> Utility:
        x = masks.astype(float)  # [n, L]
        return x @ self.weights + 0.5 * np.einsum("ni,ij,nj->n", x, self.interactions, x)

    def shapley(self) -> np.ndarray:
        return self.weights + 0.5 * self.interactions.sum(axis=1)


@dataclass
class ThresholdGame:
    """Symmetric majority game: ``v(S) = 1`` iff ``|S| >= quota``; every player's Shapley value is ``1/L``."""

    n_players: int
    quota: int

    def __call__(self, masks: Mask) -> Utility:
        return (masks.sum(axis=1) >= self.quota).astype(float)

    def shapley(self) -> np.ndarray:
        return np.full(self.n_players, 1.0 / self.n_players)
