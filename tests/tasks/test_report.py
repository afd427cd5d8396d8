"""The report stage's select section."""

from __future__ import annotations

import pytest

from tasks.report import repair_line, report_section
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


@pytest.mark.parametrize("fit, words", [("refit", "seam projections refitted"), ("map", "linear maps")])
def test_repair_line_names_the_linear_fit_that_ran(fit: str, words: str):
    run = {"start": 13, "stop": 19}
    linear = {"fit": fit, "seconds": 41.6, "repaired": [run], "skipped": [{"start": 0, "stop": 1, "reason": "layer 0"}]}
    lora = {"steps": 64, "tokens": 65536, "seconds": 390.2}
    line = repair_line({"method": "linear+lora", "windows": 256, "linear": linear, "lora": lora, "parameters_added": 0})
    assert line == (
        f"Repair: **linear+lora** on 256 calibration-source windows; {words} for the runs 13-18 (42 s); "
        "run 0-0 left unrepaired: layer 0; LoRA 64 steps, 65,536 tokens (390 s); 0 parameters added."
    )
