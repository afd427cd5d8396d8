"""Named random streams: every random draw of the pipeline comes from ``stream(seed, name)``.

Each consumer has a stream of its own, derived from ``base.seed`` and the stream's fixed key, so changing
what one consumer draws moves no other. The keys are the numbers the draws have always used (the outputs
stay byte-identical); a new consumer takes a new name here, never a literal at its call site. The prepared
text's splits have their own named streams (``shapprune.data.splits.split_stream``).
"""

from __future__ import annotations

import numpy as np

STREAMS: dict[str, tuple[int, ...]] = {
    "estimator": (1,),  # the estimator's design (sample_masks) and its replay (estimate_shapley)
    "surrogate_split": (2,),  # fit_surrogate's train / validation split
    "mlp_shapley": (3, 0),  # estimate_shapley's readout of the fitted MLP: Shapley
    "mlp_semivalue": (3, 1),  # ... and the stratum semivalue
    "baseline": (4,),  # a baseline criterion's draws (score_layers, and compare scoring the same criteria)
    "rounds": (7,),  # score_masks' rounds (score_masks.stop: decision): the surrogate refits between rounds
    "select": (8,),  # select's search and surrogate refits
    "lora": (9,),  # the repair stage's LoRA batches
    "paired_bootstrap": (11,),  # compare's paired bootstrap intervals
}


def stream(seed: int, name: str) -> np.random.Generator:
    """The generator of stream ``name`` under ``seed``; an unknown name raises ``KeyError`` naming the known ones."""
    if name not in STREAMS:
        raise KeyError(f"no random stream '{name}'; known: {', '.join(STREAMS)} (add it to shapprune/streams.py)")
    return np.random.default_rng([seed, *STREAMS[name]])
