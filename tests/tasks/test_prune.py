"""The prune stage's choice from the upstream tables (select.json here)."""

from __future__ import annotations

import pytest

from shapprune.config import ConfigError
from tasks.prune import choose_layers
from tasks.shared.contracts import write_json
from tasks.shared.paths import Paths

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
    method, n_layers, choice = choose_layers(paths, "select", lambda n: 2)
    assert (method, n_layers, choice.dropped, choice.kept) == ("select", 6, [3, 4], [0, 1, 2, 5])
    with pytest.raises(ConfigError, match=r"select searched k in \[2\] but prune asks for 3"):
        choose_layers(paths, "select", lambda n: 3)
    write_json(paths.select_json, {"method": "sleb"})
    with pytest.raises(ConfigError, match="rerun `dvc repro select`"):
        choose_layers(paths, "select", lambda n: 2)
