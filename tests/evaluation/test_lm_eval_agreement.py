"""Our zero-shot scorer against EleutherAI's lm-evaluation-harness itself, item by item.

lm-eval runs its own task definitions (prompts, choices, targets, its acc / acc_norm rules), pointed at
the same arrow files our loader reads; only the data location changes, plus BoolQ's target, whose field
is ``answer`` in this copy of the data and ``label`` in super_glue's. Both harnesses score the same
tiny random model with the real SmolLM2 tokenizer: every choice's log-likelihood and every item's acc
and acc_norm must agree.
"""

from __future__ import annotations

import lm_eval  # a dev dependency: a broken setup fails, never skips
import numpy as np
import pytest

from shapprune.evaluation.zero_shot import TASKS, accuracy, load_task, score_items
from tests.evaluation.lm_eval_tasks import LM_EVAL_YAML, local_task_configs

pytestmark = pytest.mark.slow

N_ITEMS = 4  # the first items of each validation split (lm-eval's `limit`)


@pytest.fixture(scope="module")
def both(tmp_path_factory, tiny_model, smol_tokenizer):
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    directory = tmp_path_factory.mktemp("lm_eval_tasks")
    names = local_task_configs(directory)
    harness = HFLM(pretrained=tiny_model, tokenizer=smol_tokenizer, batch_size=4, device="cpu")
    out = lm_eval.simple_evaluate(
        model=harness, tasks=names, limit=N_ITEMS, log_samples=True, bootstrap_iters=0,
        task_manager=TaskManager(include_path=str(directory)),
    )  # fmt: skip
    return out["samples"]


def test_the_tasks_compared_are_all_of_ours():
    assert sorted(LM_EVAL_YAML) == sorted(TASKS)


@pytest.mark.parametrize("task", sorted(LM_EVAL_YAML))
def test_every_choice_and_every_item_agrees_with_lm_eval(both, task, tiny_model, smol_tokenizer):
    samples = sorted(both[f"ours_{task}"], key=lambda s: s["doc_id"])
    assert len(samples) == N_ITEMS
    items = load_task(task, None, np.random.default_rng(0))[:N_ITEMS]
    ours = score_items(tiny_model, smol_tokenizer, items, batch_size=4)
    for i, (item, sample) in enumerate(zip(items, samples, strict=True)):
        theirs = [float(resp[0]) for resp in sample["filtered_resps"]]  # one log-likelihood per choice
        mine = ours[ours["item"] == i].sort_values("choice")["loglik"].tolist()
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-4, err_msg=f"{task} item {i}")
        if task != "winogrande":  # there the target is the shared continuation; acc below checks the gold
            assert int(sample["target"]) == item.label, (task, i)
        got = accuracy(ours[ours["item"] == i].assign(item=0), [item])
        assert got["acc"] == sample["acc"], (task, i)
        if "acc_norm" in sample:  # winogrande's partial scoring has no acc_norm in lm-eval
            assert got["acc_norm"] == sample["acc_norm"], (task, i)
