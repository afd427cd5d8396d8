"""Layer-pruning criteria the paper compares with, behind one interface (:mod:`shapprune.baselines.registry`)."""

from shapprune.baselines.base import LayerScores, from_values
from shapprune.baselines.registry import BASELINES, METHODS, SET_VALUED, choose_layers, layer_scores

__all__ = ["BASELINES", "METHODS", "SET_VALUED", "LayerScores", "choose_layers", "from_values", "layer_scores"]
