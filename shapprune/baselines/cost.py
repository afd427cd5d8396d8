"""What a criterion spends choosing its set of ``k`` removed layers: LLM evaluations and layer passes.

An evaluation is one forward pass of a (masked) model over the calibration windows; its layer passes are
the layers it keeps (times the calibration tokens: layer-token forwards), so a mask that keeps fewer
layers costs less.
"""

from __future__ import annotations

import math


def sleb_cost(n_layers: int, k: int) -> int:
    """LLM evaluations SLEB spends to drop ``k`` of ``n_layers`` layers (every kept layer tried at every step)."""
    return sum(n_layers - step for step in range(k))


def llm_evaluations(method: str, n_layers: int, k: int, info: dict) -> int | None:
    """Forward passes ``method`` spends on the calibration windows for its set of ``k`` (None: not known)."""
    if method == "sleb":
        return sleb_cost(n_layers, k)
    if method == "ppl":  # one model per single removed layer
        return n_layers
    if method in ("block_influence", "angular", "taylor"):  # hidden states (and gradients) of the full model
        return 1
    if method == "random":
        return 0
    if method == "oracle":
        return math.comb(n_layers, k)
    if method == "iterative_shapley":
        return info.get("n_evaluations")
    return None


def layer_passes(method: str, n_layers: int, k: int) -> int | None:
    """Kept layers summed over those forward passes (None: not known)."""
    if method == "sleb":  # step j tries each of the L - j kept layers, each mask keeping L - j - 1
        return sum((n_layers - step) * (n_layers - step - 1) for step in range(k))
    if method == "ppl":
        return n_layers * (n_layers - 1)
    if method in ("block_influence", "angular", "taylor"):
        return n_layers
    if method == "random":
        return 0
    if method == "oracle":
        return math.comb(n_layers, k) * (n_layers - k)
    return None
