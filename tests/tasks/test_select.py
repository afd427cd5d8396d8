"""The select stage's artifacts: prune's choice from select.json and the report's section."""

from __future__ import annotations

import pytest

from shapprune.config import ConfigError
from tasks.paths import Paths
from tasks.runtime import write_json
from tasks.select import choose_from_selection, report_section

TABLE = {
    "method": "select",
    "n_layers": 6,
    "n_drops": [2],
    "budget": 16,
    "rounds": 2,
    "n_evaluations": 12,
    "n_calibration_evaluations": 5,
    "n_validation_evaluations": 7,
    "calibration_full_ppl": 20.0,
    "chosen": {
        "2": {
            "dropped": [3, 4],
            "sources": ["beam", "block"],
            "round": 1,
            "predicted": 0.81,
            "calibration": 0.8,
            "validation": 0.78,
            "ranking": {"dropped": [1, 4], "calibration": 0.7, "validation": None},
        }
    },
}


def test_prune_takes_selects_set_for_its_k(tmp_path):
    paths = Paths(tmp_path)
    write_json(paths.select_json, TABLE)
    method, n_layers, choice = choose_from_selection(paths, lambda n: 2)
    assert (method, n_layers, choice.dropped, choice.kept) == ("select", 6, [3, 4], [0, 1, 2, 5])
    with pytest.raises(ConfigError, match=r"select searched k in \[2\] but prune asks for 3"):
        choose_from_selection(paths, lambda n: 3)
    write_json(paths.select_json, {"method": "sleb"})
    with pytest.raises(ConfigError, match="rerun `dvc repro select`"):
        choose_from_selection(paths, lambda n: 2)


def test_report_section_compares_search_ranking_and_sleb():
    sleb = {"method": "sleb", "chosen": {"2": [4, 5]}, "info": {"ppl_after_step": [21.0, 25.0]}}
    text, metrics = report_section(TABLE, sleb)
    assert "| 2 | searched | [3, 4] | beam+block (round 1) | 0.8100 | 0.8000 | 0.7800 |" in text
    assert "| 2 | ranking (drop lowest) | [1, 4] | contributions | – | 0.7000 | – |" in text
    assert "| 2 | SLEB | [4, 5] | data/layer_scores | – | 0.8000 | – |" in text  # 20 / 25
    assert metrics["select_k2_validation"] == 0.78 and metrics["ranking_k2_calibration"] == 0.7
    assert "ranking_k2_validation" not in metrics
    assert report_section({"method": "shapley"}) == ("", {})
