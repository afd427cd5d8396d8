"""The comparison table's pieces: costs, verdicts, bold cells and plot data, on tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shapprune.baselines import LayerScores
from shapprune.checkpoint import PartStore
from tasks import compare as cmp
from tests.conftest import tiny_llama


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


def test_scoring_evaluations() -> None:
    assert cmp.scoring_evaluations("sleb", 30, 9, {}) == 234  # 30 + 29 + ... + 22
    assert cmp.scoring_evaluations("sleb", 30, 3, {}) == 87
    assert cmp.scoring_evaluations("ppl", 30, 9, {}) == 30
    assert cmp.scoring_evaluations("random", 30, 9, {}) == 0
    assert cmp.scoring_evaluations("oracle", 6, 2, {}) == 15


def test_goal_lines_give_win_tie_and_loss() -> None:
    lines = cmp.goal_lines(table(), ["wiki", "web"])
    assert lines[0] == "- k=2, wiki: select 12.00 vs best other (sleb) 12.00: tie"  # the oracle is no rival
    assert lines[1] == "- k=2, web: select 25.00 vs best other (sleb) 24.00: LOSS"
    assert lines[2].startswith("- k=2, mean acc: select 0.450 vs sleb 0.400 (+0.050")


def test_markdown_bolds_the_best_non_oracle_method() -> None:
    text = cmp.markdown(table(), ["wiki", "web"], "m.gguf", 20, {"wiki": 8, "web": 8})
    assert "| select | 2 | 3 4 | **12.00** | 25.00 |" in text
    assert "| sleb | 2 | 3 5 | **12.00** | **24.00** |" in text
    assert "| oracle | 2 | 2 4 | 11.00 | 21.00 |" in text
    assert "| full | 0 | - | 10.00 | 20.00 |" in text


def test_ppl_long_starts_every_method_at_the_full_model() -> None:
    long = cmp.ppl_long(table(), ["wiki", "web"])
    assert len(long) == 4 * 2 * 2
    sleb = long[(long.method == "sleb") & (long.corpus == "web")]
    assert sleb.n_drop.tolist() == [0, 2] and sleb.ppl.tolist() == [20.0, 24.0]


def test_baseline_sets_and_records_round_trip() -> None:
    result = LayerScores("angular", np.array([0.5, np.inf, 0.1, 0.3]), chosen={1: [2]}, set_valued=True)
    back, seconds = cmp.result_from_record("angular", cmp.result_record(result, 1.5))
    assert seconds == 1.5 and np.array_equal(back.scores, result.scores) and back.chosen == {1: [2]}
    sets = cmp.baseline_sets("angular", back, seconds, [1, 2])
    assert sets.sets == {1: [2]} and len(sets.notes) == 1 and "n_drop=2" in sets.notes[0]
    assert sets.rank.tolist() == [3, 4, 1, 2] and sets.llm_evaluations == {1: 1}


def test_rows_take_metrics_from_the_store(tmp_path) -> None:
    store = PartStore(tmp_path)
    store.put("ppl-full", {"ppl_wiki": 10.0})
    store.put("ppl-0-2", {"ppl_wiki": 13.0})
    store.put("zs-0-2", {"mean_acc": 0.4})
    model = tiny_llama(n_layers=4)
    per_layer = sum(p.numel() for p in model.model.layers[0].parameters())
    total = sum(p.numel() for p in model.parameters())
    m = cmp.MethodSets("ppl", {2: [0, 2]}, np.array([1, 3, 2, 4]), 2.0, {2: 4})
    other = cmp.MethodSets("sleb", {2: [0, 2], 1: [3]}, np.array([1, 3, 2, 4]), 2.0, {2: 4})
    assert cmp.distinct_sets([m, other]) == [[], [0, 2], [3]]
    df = cmp.rows([m], store, model)
    assert df.method.tolist() == ["full", "ppl"] and df.ppl_wiki.tolist() == [10.0, 13.0]
    assert df.params_kept.tolist() == [1.0, pytest.approx(1 - 2 * per_layer / total)]
    assert df.dropped.tolist() == ["-", "0 2"] and df.mean_acc.iloc[1] == 0.4 and df.ratio.iloc[1] == 0.5
    assert df.llm_evaluations.iloc[1] == 4
    ranks = cmp.layer_ranks([m, cmp.MethodSets("select", {2: [1, 2]}, None, None, {2: 9})])
    assert set(ranks.method) == {"ppl"} and ranks["rank"].tolist() == [1, 3, 2, 4]


def test_a_baseline_that_cannot_run_is_a_note_not_a_crash(tmp_path, tiny_model) -> None:
    from shapprune.config import Params
    from tasks.artifacts import write_windows
    from tasks.paths import Paths

    paths = Paths(tmp_path)
    windows = np.random.default_rng(0).integers(3, 49152, size=(2, 16), dtype=np.int64)
    write_windows(windows, paths.calibration, "test")
    store = PartStore(tmp_path / "store")
    # Taylor+ protects the first 4 and last 2 of the tiny model's 6 layers: nothing is left to remove
    taylor = cmp.method_sets(Params(), paths, "taylor", tiny_model, [1], store)
    assert taylor.sets == {} and "not compared" in taylor.notes[0] and "taylor_protect" in taylor.notes[0]
    sleb = cmp.method_sets(Params(), paths, "sleb", tiny_model, [1, 2], store)
    assert len(sleb.sets[1]) == 1 and len(sleb.sets[2]) == 2 and store.get("score-sleb")["ks"] == [1, 2]
    again = cmp.method_sets(Params(), paths, "sleb", tiny_model, [1, 2], PartStore(tmp_path / "store"))
    assert again.sets == sleb.sets  # read back, not rescored
