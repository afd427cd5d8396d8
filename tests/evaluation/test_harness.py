"""Any lm-eval task run by lm-eval itself on an in-memory model: known answers and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.evaluation.harness import HarnessError, _metrics, check_tasks, run_task
from shapprune.evaluation.zero_shot import accuracy, load_task, score_items
from tests.evaluation.lm_eval_tasks import local_task_configs

N_ITEMS = 6


def test_metrics_drop_aliases_and_missing_errors_and_name_filters() -> None:
    entry = {"alias": "piqa", "acc,none": 0.5, "acc_stderr,none": "N/A", "exact_match,strict-match": 0.25}
    assert _metrics(entry) == {"acc": 0.5, "exact_match_strict-match": 0.25}


@pytest.fixture(scope="module")
def local_tasks(tmp_path_factory) -> str:
    """lm-eval's own task definitions (``ours_<task>``) pointed at the offline arrow files our scorer reads."""
    directory = tmp_path_factory.mktemp("harness_tasks")
    local_task_configs(directory)
    return str(directory)


@pytest.mark.slow  # lm-eval's task index takes about 10 s to build
def test_a_task_run_by_lm_eval_gives_our_scorers_accuracy_on_the_same_items(
    local_tasks, tiny_model, smol_tokenizer
) -> None:
    got = run_task(tiny_model, smol_tokenizer, "ours_piqa", N_ITEMS, 4, "cpu", 0, include_path=local_tasks)
    items = load_task("piqa", None, np.random.default_rng(0))[:N_ITEMS]  # lm-eval's limit: the first items
    ours = accuracy(score_items(tiny_model, smol_tokenizer, items, batch_size=4), items)
    assert got["n"] == N_ITEMS
    assert got["acc"] == pytest.approx(ours["acc"], abs=1e-12)
    assert got["acc_norm"] == pytest.approx(ours["acc_norm"], abs=1e-12)
    assert got["acc_stderr"] == pytest.approx(np.sqrt(ours["acc"] * (1 - ours["acc"]) / (N_ITEMS - 1)))


@pytest.mark.slow
def test_an_unknown_task_is_refused_in_one_line(tiny_model, smol_tokenizer) -> None:
    with pytest.raises(HarnessError, match="lm-eval has no task 'no_such_task'; `lm_eval ls tasks`") as err:
        run_task(tiny_model, smol_tokenizer, "no_such_task", 2, 4, "cpu", 0)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_a_hub_task_offline_is_refused_with_the_fix_after_a_local_one_passes(local_tasks, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_tasks(["ours_piqa"], include_path=local_tasks)  # its data is on disk
    with pytest.raises(HarnessError, match="cannot load the data of 'lambada_openai' offline.*HF_DATASETS_OFFLINE=0"):
        check_tasks(["ours_piqa", "lambada_openai"], include_path=local_tasks)


@pytest.mark.slow
def test_run_task_alone_refuses_a_hub_task_offline_in_the_same_line(tiny_model, smol_tokenizer, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HarnessError, match="cannot load the data of 'lambada_openai' offline.*drop it from the list$"):
        run_task(tiny_model, smol_tokenizer, "lambada_openai", 2, 4, "cpu", 0)
