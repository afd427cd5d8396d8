"""What each criterion spends: LLM evaluations and layer passes, counted by hand."""

from __future__ import annotations

from shapprune.baselines import cost


def test_llm_evaluations() -> None:
    assert cost.llm_evaluations("sleb", 30, 9, {}) == cost.sleb_cost(30, 9) == 234  # 30 + 29 + ... + 22
    assert cost.llm_evaluations("sleb", 30, 3, {}) == 87
    assert cost.llm_evaluations("ppl", 30, 9, {}) == 30
    assert cost.llm_evaluations("random", 30, 9, {}) == 0
    assert cost.llm_evaluations("oracle", 6, 2, {}) == 15
    assert cost.llm_evaluations("iterative_shapley", 6, 2, {"n_evaluations": 7}) == 7


def test_layer_passes_count_the_kept_layers_of_every_forward() -> None:
    assert cost.layer_passes("sleb", 4, 2) == 4 * 3 + 3 * 2  # step 1: 4 masks of 3 kept; step 2: 3 of 2
    assert cost.layer_passes("ppl", 30, 9) == 30 * 29
    assert cost.layer_passes("block_influence", 30, 9) == 30  # one pass of the full model
    assert cost.layer_passes("oracle", 6, 2) == 15 * 4 and cost.layer_passes("random", 6, 2) == 0
    assert cost.layer_passes("iterative_shapley", 6, 2) is None  # not recorded
