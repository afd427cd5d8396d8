"""score_layers + prune with a baseline criterion on a tiny LLaMA: the table, the recorded sets and the pruned model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from transformers import AutoModelForCausalLM

from flows.prepare_data import prepare_data
from flows.prepare_model import prepare_model
from flows.prune import prune
from flows.score_layers import score_layers


def _set(workspace, section: str, **kw) -> None:
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params.setdefault(section, {}).update(kw)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_baseline_tables_feed_prune(workspace, prefect_api, monkeypatch):
    monkeypatch.setenv("SHAPPRUNE_TRACKING", "off")
    root = str(workspace)
    prepare_model(root=root)
    prepare_data(root=root)
    scores_dir = workspace / "data" / "layer_scores"

    assert score_layers(root=root) == {"method": "select"}  # the default: a placeholder, no model loaded
    assert json.loads((scores_dir / "layer_scores.json").read_text())["method"] == "select"

    _set(workspace, "prune", method="block_influence", n_drop=2)
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

    _set(workspace, "prune", method="sleb", n_drop=2)
    with pytest.raises(Exception, match="holds 'block_influence' scores but prune.method is 'sleb'"):
        prune(root=root)
    score_layers(root=root)
    _set(workspace, "prune", n_drop=3)
    with pytest.raises(Exception, match=r"recorded layer sets for k in \[1, 2\] but prune asks for 3"):
        prune(root=root)
    _set(workspace, "prune", n_drop=2)
    sleb = json.loads((scores_dir / "layer_scores.json").read_text())
    assert prune(root=root)["dropped_layers"] == sleb["chosen"]["2"] == sorted(sleb["info"]["removal_order"][:2])
