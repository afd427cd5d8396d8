"""The compare stage's work: costs, sets read back from the store, and the table's rows, with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.baselines import LayerScores
from shapprune.checkpoint import PartStore
from tasks import compare as cmp
from tasks import compare_sets as cs
from tests.conftest import tiny_llama


def test_baseline_sets_and_records_round_trip() -> None:
    result = LayerScores("angular", np.array([0.5, np.inf, 0.1, 0.3]), chosen={1: [2]}, set_valued=True)
    back, seconds = cs.result_from_record("angular", cs.result_record(result, 1.5))
    assert seconds == 1.5 and np.array_equal(back.scores, result.scores) and back.chosen == {1: [2]}
    sets = cs.baseline_sets("angular", back, seconds, [1, 2])
    assert sets.sets == {1: [2]} and len(sets.notes) == 1 and "n_drop=2" in sets.notes[0]
    assert sets.rank.tolist() == [3, 4, 1, 2] and sets.llm_evaluations == {1: 1} and sets.layer_forwards == {1: 4}


def test_rows_take_metrics_from_the_store(tmp_path) -> None:
    store = PartStore(tmp_path)
    store.put("ppl-full", {"ppl_wiki": 10.0})
    store.put("ppl-0-2", {"ppl_wiki": 13.0})
    store.put("zs-0-2", {"mean_acc": 0.4})
    model = tiny_llama(n_layers=4)
    per_layer = sum(p.numel() for p in model.model.layers[0].parameters())
    total = sum(p.numel() for p in model.parameters())
    m = cs.MethodSets("ppl", {2: [0, 2]}, np.array([1, 3, 2, 4]), 2.0, {2: 4})
    other = cs.MethodSets("sleb", {2: [0, 2], 1: [3]}, np.array([1, 3, 2, 4]), 2.0, {2: 4})
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
    taylor = cs.method_sets(project_params(), paths, "taylor", tiny_model, [1], store)
    assert taylor.sets == {} and "not compared" in taylor.notes[0] and "taylor_protect" in taylor.notes[0]
    sleb = cs.method_sets(project_params(), paths, "sleb", tiny_model, [1, 2], store)
    assert len(sleb.sets[1]) == 1 and len(sleb.sets[2]) == 2 and store.get("score-sleb")["ks"] == [1, 2]
    again = cs.method_sets(project_params(), paths, "sleb", tiny_model, [1, 2], PartStore(tmp_path / "store"))
    assert again.sets == sleb.sets  # read back, not rescored


@pytest.mark.slow  # several seconds: the full tier runs it
def test_a_repaired_row_is_the_model_the_repair_stage_would_save(tmp_path, smol_tokenizer) -> None:
    """compare's linear axis merges the repair stage's maps into the evaluated model and takes them out again."""
    import torch

    from shapprune.evaluation.zero_shot import load_task
    from shapprune.repair.linear import linear_repair
    from shapprune.scoring import window_nll
    from tasks.shared.artifacts import write_windows
    from tasks.shared.paths import Paths
    from tests.conftest import project_params

    paths = Paths(tmp_path)
    model = tiny_llama(n_layers=6)
    model.save_pretrained(paths.model)
    smol_tokenizer.save_pretrained(paths.model)
    rng = np.random.default_rng(0)
    write_windows(rng.integers(3, 49152, size=(6, 16), dtype=np.int64), paths.repair_windows, "calibration")
    held_out = rng.integers(3, 49152, size=(3, 16), dtype=np.int64)
    write_windows(held_out, paths.eval_windows("wiki"), "held-out")
    params = project_params({"prepare_data": {"eval_corpora": {"wiki": "wiki_extracts"}}, "repair": {"ridge": 1e-3}})
    items = {"piqa": load_task("piqa", 2, np.random.default_rng(0))}
    store = PartStore(tmp_path / "store")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sets = [[2, 3], [4]]
    assert cmp.evaluate_repaired_sets(params, paths, model, smol_tokenizer, sets, items, store) == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the maps were taken out
    for dropped in sets:
        repaired = tiny_llama(n_layers=6)
        keep = ~np.isin(np.arange(6), dropped)
        windows = np.asarray(cmp.read_windows(paths.repair_windows))
        report = linear_repair(repaired, keep, windows, ridge=1e-3, fit=params.repair.fit)
        assert len(report.repaired) == 1 and not report.skipped
        expected = window_nll(repaired, held_out).perplexity
        assert store.get(f"ppl-linear-{cmp.set_key(dropped)}")["ppl_wiki"] == pytest.approx(expected, rel=1e-5)
        plain = store.get(f"ppl-{cmp.set_key(dropped)}")
        assert plain is None  # the plain axis is evaluate_sets' job
    rows = cmp.rows([cs.MethodSets("sleb", {2: [2, 3], 1: [4]}, None, 1.0, {})], store, model, ("none", "linear"))
    assert rows.repair.tolist() == ["none", "none", "none", "linear", "linear"]
    assert rows[rows.repair == "linear"].ppl_wiki.notna().all() and rows[rows.repair == "none"].ppl_wiki.isna().all()


def test_paired_differences_against_the_best_method(tmp_path) -> None:
    """Known answers: a set 0.05 nats/token worse on every window is 1.05x and real; the best's own set is
    marked as such; a single flipped item is within the noise; the best by accuracy can differ from PPL's."""
    import math

    import pandas as pd

    store = PartStore(tmp_path)
    base = np.random.default_rng(0).gamma(5.0, 60.0, size=40)
    store.put("ppl-1", {"ppl_wiki": 10.0, "window_nll_wiki": base.tolist()})
    store.put("ppl-2", {"ppl_wiki": 10.5, "window_nll_wiki": (base + 0.05 * 15).tolist()})
    hits = [1, 0] * 10
    store.put("zs-1", {"mean_acc": 0.5, "hits_piqa": hits})
    store.put("zs-2", {"mean_acc": 0.55, "hits_piqa": [1, 1] + hits[2:]})
    table = pd.DataFrame(
        [
            {"method": "full", "repair": "none", "n_drop": 0, "dropped": "-", "ppl_wiki": 9.0, "mean_acc": 0.6},
            {"method": "sleb", "repair": "none", "n_drop": 1, "dropped": "1", "ppl_wiki": 10.0, "mean_acc": 0.5},
            {"method": "select", "repair": "none", "n_drop": 1, "dropped": "1", "ppl_wiki": 10.0, "mean_acc": 0.5},
            {"method": "angular", "repair": "none", "n_drop": 1, "dropped": "2", "ppl_wiki": 10.5, "mean_acc": 0.55},
        ]
    )
    got = cmp.paired(table, store, ["wiki"], 15, 500, np.random.default_rng(1)).set_index(["metric", "method"])
    ppl = got.loc["ppl_wiki"]
    assert set(ppl.best) == {"sleb"} and ppl.loc["select"].same_set and not ppl.loc["select"].real
    assert ppl.loc["angular"].estimate == pytest.approx(math.exp(0.05)) and ppl.loc["angular"].real
    acc = got.loc["mean_acc"]
    assert set(acc.best) == {"angular"} and acc.loc["sleb"].estimate == pytest.approx(-0.05)
    assert not acc.loc["sleb"].real and acc.loc["sleb"].low < 0 == acc.loc["sleb"].high  # one item: never above
