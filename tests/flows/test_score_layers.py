"""score_layers + prune with a baseline criterion on a tiny LLaMA: the table, the recorded sets and the pruned model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from transformers import AutoModelForCausalLM

from flows.prune import prune
from flows.score_layers import score_layers
from tests.flows.conftest import update_params


def test_baseline_tables_feed_prune(tiny_pipeline, tmp_path, monkeypatch):
    # the default (prune.method: select), in the shared run: a placeholder, no model loaded
    assert tiny_pipeline.results["score_layers"] == {"method": "select"}
    shared = tiny_pipeline.root / "data" / "layer_scores" / "layer_scores.json"
    assert json.loads(shared.read_text())["method"] == "select"

    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    workspace = tiny_pipeline.copy(tmp_path / "ws", "data/model", "data/windows")  # what prepare_* made
    root = str(workspace)
    scores_dir = workspace / "data" / "layer_scores"

    update_params(workspace, "prune", method="block_influence", n_drop=2)
    info = score_layers(root=root)
    table = pd.read_csv(scores_dir / "layer_scores.csv")
    assert list(table.columns) == ["layer", "block_influence", "block_influence_se", "rank"] and len(table) == 6
    lowest = table.sort_values(["block_influence", "layer"])["layer"].head(2).tolist()
    saved = json.loads((scores_dir / "layer_scores.json").read_text())
    assert saved["chosen"]["2"] == sorted(lowest) == info["chosen"][2]
    assert sorted(map(int, saved["chosen"])) == [1, 2]  # max_drop_ratio 0.4 of 6 layers
    pruning = prune(root=root)
    assert pruning["method"] == "block_influence" and pruning["dropped_layers"] == sorted(lowest)
    assert pruning["boundary_z"] is None
    assert AutoModelForCausalLM.from_pretrained(workspace / "data" / "pruned").config.num_hidden_layers == 4

    update_params(workspace, "prune", method="sleb", n_drop=2)
    with pytest.raises(Exception, match="holds 'block_influence' scores but prune.method is 'sleb'"):
        prune(root=root)
    score_layers(root=root)
    update_params(workspace, "prune", n_drop=3)
    with pytest.raises(Exception, match=r"recorded layer sets for k in \[1, 2\] but prune asks for 3"):
        prune(root=root)
    update_params(workspace, "prune", n_drop=2)
    sleb = json.loads((scores_dir / "layer_scores.json").read_text())
    assert prune(root=root)["dropped_layers"] == sleb["chosen"]["2"] == sorted(sleb["info"]["removal_order"][:2])
