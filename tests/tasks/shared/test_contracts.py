"""Typed readers of the artifacts that cross a stage boundary: what they read, and the error for an old file."""

from __future__ import annotations

import json

import pytest

from shapprune.config import ConfigError
from tasks.shared.contracts import EvalSummary, write_json

EVAL = {
    "which": "pruned",
    "n_layers": 24,
    "parameters": 100,
    "ppl": {"wiki": 30.5, "news": 60.25},
    "tokens_per_s": 900.0,
    "zero_shot": {"piqa": {"acc": 0.6, "acc_stderr": 0.05, "acc_norm": 0.55, "acc_norm_stderr": 0.05, "n": 100}},
    "mean_acc": 0.6,
    "mean_acc_norm": 0.55,
}


def test_eval_summary_reads_what_evaluate_writes(tmp_path):
    got = EvalSummary.read(write_json(tmp_path / "eval_pruned.json", EVAL))
    assert (got.which, got.n_layers, got.ppl, got.mean_acc) == ("pruned", 24, {"wiki": 30.5, "news": 60.25}, 0.6)
    assert got.zero_shot["piqa"].acc_norm == 0.55 and got.zero_shot["piqa"].n == 100


def test_an_old_eval_file_names_the_stage_to_rerun(tmp_path):
    path = tmp_path / "eval_repaired.json"
    path.write_text(json.dumps({k: v for k, v in EVAL.items() if k != "mean_acc_norm"}))
    with pytest.raises(ConfigError, match=r"no 'mean_acc_norm' .*; rerun `dvc repro evaluate@repaired`"):
        EvalSummary.read(path)
