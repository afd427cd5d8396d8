"""The compare report's pieces: verdicts, bold cells and plot data, on tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks import compare_report as rpt
from tasks.compare_sets import MethodSets


def table() -> pd.DataFrame:
    rows = [
        ("full", 0, "-", 10.0, 20.0, 0.50),
        ("select", 2, "3 4", 12.0, 25.0, 0.45),
        ("sleb", 2, "3 5", 12.0, 24.0, 0.40),
        ("ppl", 2, "1 4", 15.0, 26.0, 0.48),
        ("oracle", 2, "2 4", 11.0, 21.0, 0.44),
    ]
    df = pd.DataFrame(rows, columns=["method", "n_drop", "dropped", "ppl_wiki", "ppl_web", "mean_acc"])
    return df.assign(mean_acc_se=0.02, params_kept=[1.0, 0.8, 0.8, 0.8, 0.8], ratio=df.n_drop / 10)


def test_goal_lines_give_win_tie_and_loss() -> None:
    lines = rpt.goal_lines(table(), ["wiki", "web"])
    assert lines[0] == "- k=2, wiki: select 12.00 vs best other (sleb) 12.00: tie"  # the oracle is no rival
    assert lines[1] == "- k=2, web: select 25.00 vs best other (sleb) 24.00: LOSS"
    assert lines[2].startswith("- k=2, mean acc: select 0.450 vs sleb 0.400 (+0.050")


def test_markdown_bolds_the_best_non_oracle_method() -> None:
    text = rpt.markdown(table(), ["wiki", "web"], "m.gguf", 20, {"wiki": 8, "web": 8})
    assert "| select | 2 | 3 4 | **12.00** | 25.00 |" in text
    assert "| sleb | 2 | 3 5 | **12.00** | **24.00** |" in text
    assert "| oracle | 2 | 2 4 | 11.00 | 21.00 |" in text
    assert "| full | 0 | - | 10.00 | 20.00 |" in text


def test_ppl_long_starts_every_method_at_the_full_model() -> None:
    long = rpt.ppl_long(table(), ["wiki", "web"])
    assert len(long) == 4 * 2 * 2
    sleb = long[(long.method == "sleb") & (long.corpus == "web")]
    assert sleb.n_drop.tolist() == [0, 2] and sleb.ppl.tolist() == [20.0, 24.0]


def test_layer_ranks_skip_methods_without_a_ranking() -> None:
    ppl = MethodSets("ppl", {2: [0, 2]}, np.array([1, 3, 2, 4]), 2.0, {2: 4})
    ranks = rpt.layer_ranks([ppl, MethodSets("select", {2: [1, 2]}, None, None, {2: 9})])
    assert set(ranks.method) == {"ppl"} and ranks["rank"].tolist() == [1, 3, 2, 4]


def test_paired_markdown_bolds_only_real_differences() -> None:
    rows = [
        {"n_drop": 3, "method": "angular", "metric": "ppl_wiki", "best": "sleb", "same_set": False}
        | {"estimate": 1.2, "low": 1.1, "high": 1.3, "real": True, "repair": "none"},
        {"n_drop": 3, "method": "select", "metric": "ppl_wiki", "best": "sleb", "same_set": True}
        | {"estimate": 1.0, "low": 1.0, "high": 1.0, "real": False, "repair": "none"},
        {"n_drop": 3, "method": "angular", "metric": "mean_acc", "best": "sleb", "same_set": False}
        | {"estimate": -0.02, "low": -0.05, "high": 0.01, "real": False, "repair": "none"},
    ]
    lines = rpt.paired_markdown(pd.DataFrame(rows), ["wiki"], 2000, "## Real?")
    body = {line.split(" | ")[1]: line for line in lines if line.startswith("| 3 |")}
    assert body["sleb"] == "| 3 | sleb | best | best |"
    assert "**1.200x [1.100, 1.300]**" in body["angular"] and "-0.020 [-0.050, +0.010] |" in body["angular"]
    assert "same set" in body["select"] and "2,000" in lines[2]
    assert rpt.paired_markdown(pd.DataFrame(columns=list(rows[0])), ["wiki"], 2000, "x") == []
