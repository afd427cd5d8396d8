"""The names a ``params.yaml`` value may hold, as plain tuples: the schema checks them without importing torch.

The registries that run them (:mod:`shapprune.baselines.registry`, :mod:`shapprune.evaluation.zero_shot`)
import torch; each asserts at import that its names are these, and ``tests/test_config.py`` checks it too.
Text sources are checked against :data:`shapprune.data.sources.OFFLINE_SOURCES` (a light module) directly.
"""

from __future__ import annotations

# prune.method, compare.methods: the pipeline's own two, then shapprune.baselines.registry.BASELINES' keys
PRUNE_METHODS: tuple[str, ...] = (
    "shapley",
    "select",
    "block_influence",
    "angular",
    "sleb",
    "ppl",
    "taylor",
    "random",
    "oracle",
    "iterative_shapley",
)

# evaluate.tasks: the zero-shot tasks our own scorer reads offline (shapprune.evaluation.zero_shot.TASKS)
ZERO_SHOT_TASKS: tuple[str, ...] = (
    "piqa",
    "hellaswag",
    "winogrande",
    "arc_easy",
    "arc_challenge",
    "boolq",
    "openbookqa",
)
