"""The report stage's select section."""

from __future__ import annotations

from tasks.report import report_section
from tests.tasks.test_prune import TABLE


def test_report_section_compares_search_ranking_and_sleb():
    sleb = {"method": "sleb", "chosen": {"2": [4, 5]}, "info": {"ppl_after_step": [21.0, 25.0]}}
    text, metrics = report_section(TABLE, sleb)
    assert "| 2 | searched | [3, 4] | beam+block (round 1) | 0.8100 | 0.8000 | 0.7800 |" in text
    assert "| 2 | ranking (drop lowest) | [1, 4] | contributions | – | 0.7000 | – |" in text
    assert "| 2 | SLEB | [4, 5] | data/layer_scores | – | 0.8000 | – |" in text  # 20 / 25
    assert metrics["select_k2_validation"] == 0.78 and metrics["ranking_k2_calibration"] == 0.7
    assert "ranking_k2_validation" not in metrics
    assert report_section({"method": "shapley"}) == ("", {})


def test_report_section_states_what_a_budgeted_search_cost_per_k():
    row = TABLE["chosen"]["2"] | {"evaluations": 12, "layer_token_forwards": 5120, "larger_budget_may_change": True}
    text, _ = report_section(TABLE | {"strategy": "budgeted", "chosen": {"2": row}})
    assert "- k=2: 12 evaluations, 5,120 layer-token forwards; a larger budget may change it" in text
    assert "Budgeted search" not in report_section(TABLE)[0]
