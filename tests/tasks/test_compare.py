"""The compare stage's work: costs, sets read back from the store, and the table's rows, with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.baselines import LayerScores
from shapprune.checkpoint import PartStore
from tasks import compare as cmp
from tests.conftest import tiny_llama


def test_scoring_evaluations() -> None:
    assert cmp.scoring_evaluations("sleb", 30, 9, {}) == 234  # 30 + 29 + ... + 22
    assert cmp.scoring_evaluations("sleb", 30, 3, {}) == 87
    assert cmp.scoring_evaluations("ppl", 30, 9, {}) == 30
    assert cmp.scoring_evaluations("random", 30, 9, {}) == 0
    assert cmp.scoring_evaluations("oracle", 6, 2, {}) == 15


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


def test_a_baseline_that_cannot_run_is_a_note_not_a_crash(tmp_path, tiny_model) -> None:
    from tasks.shared.artifacts import write_windows
    from tasks.shared.paths import Paths
    from tests.conftest import project_params

    paths = Paths(tmp_path)
    windows = np.random.default_rng(0).integers(3, 49152, size=(2, 16), dtype=np.int64)
    write_windows(windows, paths.calibration, "test")
    store = PartStore(tmp_path / "store")
    # Taylor+ protects the first 4 and last 2 of the tiny model's 6 layers: nothing is left to remove
    taylor = cmp.method_sets(project_params(), paths, "taylor", tiny_model, [1], store)
    assert taylor.sets == {} and "not compared" in taylor.notes[0] and "taylor_protect" in taylor.notes[0]
    sleb = cmp.method_sets(project_params(), paths, "sleb", tiny_model, [1, 2], store)
    assert len(sleb.sets[1]) == 1 and len(sleb.sets[2]) == 2 and store.get("score-sleb")["ks"] == [1, 2]
    again = cmp.method_sets(project_params(), paths, "sleb", tiny_model, [1, 2], PartStore(tmp_path / "store"))
    assert again.sets == sleb.sets  # read back, not rescored
