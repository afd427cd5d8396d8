"""Zero-shot multiple-choice tasks: data conventions, log-likelihood scoring and accuracy."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from shapprune.evaluation import zero_shot as zs
from shapprune.evaluation.zero_shot import MCItem

ITEMS = [  # varied lengths, so batches need padding; the last one is scored winogrande-style
    MCItem("Question: What colour is the sky?\nAnswer:", (" blue", " green with purple stripes", " red"), 0),
    MCItem("The capital of France is", (" Paris", " Rome"), 0),
    MCItem("Once upon a time, in a land far away, there lived a king who", (" ruled.", " sang loudly"), 1),
    MCItem("Sarah was a better surgeon than Maria so ", ("Sarah", "Maria"), 1, " got the easier cases."),
]


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
    )
    return LlamaForCausalLM(config).eval()


def _reference_loglik(model, tokenizer, context: str, continuation: str, bos: bool = False) -> float:
    """Sum of continuation log-probs from one unbatched, unpadded forward pass."""
    ctx = ([tokenizer.bos_token_id] if bos else []) + tokenizer(context).input_ids
    cont = tokenizer(continuation).input_ids
    ids = (ctx + cont)[-513:]  # at most max_position_embeddings + 1 tokens, the last one only a target
    with torch.no_grad():
        logprobs = model(torch.tensor([ids[:-1]])).logits[0].double().log_softmax(-1)  # (T, V)
    positions = range(len(ids) - 1 - len(cont), len(ids) - 1)
    return float(sum(logprobs[p, t] for p, t in zip(positions, cont, strict=True)))


# ---------------------------------------------------------------------------------------------- tasks


@pytest.mark.parametrize(
    ("task", "n", "label_counts"),
    [
        ("piqa", 1838, [910, 928]),
        ("hellaswag", 10042, [2515, 2485, 2584, 2458]),
        ("winogrande", 1267, [628, 639]),
        ("arc_easy", 570, [158, 152, 142, 118]),
        ("arc_challenge", 299, [64, 73, 78, 83, 1]),
        ("boolq", 3270, [1237, 2033]),
        ("openbookqa", 500, [126, 138, 110, 126]),
    ],
)
def test_tasks_load_with_0_based_labels(task: str, n: int, label_counts: list[int]) -> None:
    items = zs.load_task(task, None, np.random.default_rng(0))
    assert len(items) == n
    assert np.bincount([item.label for item in items]).tolist() == label_counts
    assert all(0 <= item.label < len(item.choices) for item in items)


def test_known_items() -> None:
    rng = np.random.default_rng(0)
    wino = zs.load_task("winogrande", None, rng)[0]  # answer '2' (1-based) -> option2 'Maria'
    assert wino == MCItem(
        "Sarah was a much better surgeon than Maria so ", ("Sarah", "Maria"), 1, " always got the easier cases."
    )
    assert wino.requests()[1] == (
        "Sarah was a much better surgeon than Maria so Maria",
        " always got the easier cases.",
    )
    piqa = zs.load_task("piqa", None, rng)[0]  # ClassLabel: stored as int 0, not the string '0'
    assert piqa.context == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
    assert piqa.label == 0 and piqa.choices[0].startswith(" Provide the guinea pig with a cage full")
    arc = zs.load_task("arc_easy", None, rng)
    assert arc[0].context == "Question: Which technology was developed most recently?\nAnswer:"
    assert arc[0].choices[0] == " cellular telephone" and arc[0].label == 0  # answerKey 'A'
    assert arc[8].choices[0] == " obtain energy" and arc[8].label == 0  # answerKey '1' with labels '1'..'4'
    assert arc[63].label == 1  # answerKey '2'
    boolq = zs.load_task("boolq", None, rng)[0]  # answer False -> " no"
    assert boolq.context.endswith("\nQuestion: does ethanol take more energy make that produces?\nAnswer:")
    assert boolq.choices == (" no", " yes") and boolq.label == 0
    obqa = zs.load_task("openbookqa", None, rng)[0]
    assert obqa.context.startswith("Frilled sharks and angler fish") and obqa.label == 0


def test_hellaswag_preprocessing() -> None:
    assert zs.preprocess_hellaswag(" Bake cookies [title] Preheat the oven. [step] Mix  flour. ") == (
        "Bake cookies. Preheat the oven. Mix flour."
    )
    items = zs.load_task("hellaswag", None, np.random.default_rng(0))
    assert items[0].context == "Roof shingle removal: A man is sitting on a roof. He"  # ctx_b capitalised
    assert items[0].choices[3] == " starts pulling up roofing on a roof." and items[0].label == 3
    assert items[3243].context.startswith(  # raw: "...: [header] How to become ... consultant [title] Obtain..."
        "Personal Care and Style: How to become a fashion consultant. Obtain your high school diploma or ged. This"
    )


def test_load_task_subsets_are_deterministic() -> None:
    first = zs.load_task("boolq", 5, np.random.default_rng(7))
    assert first == zs.load_task("boolq", 5, np.random.default_rng(7))
    assert first != zs.load_task("boolq", 5, np.random.default_rng(8))
    every = zs.load_task("boolq", None, np.random.default_rng(0))
    assert all(item in every for item in first)


def test_load_task_errors() -> None:
    with pytest.raises(ValueError, match="unknown task 'mmlu'; valid tasks are piqa, hellaswag"):
        zs.load_task("mmlu", 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="openbookqa has 500 items"):
        zs.load_task("openbookqa", 501, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------- scoring


@pytest.mark.parametrize("bos", [False, True])
def test_batched_scores_equal_unbatched_forward(model, smol_tokenizer, bos: bool) -> None:
    scores = zs.score_items(model, smol_tokenizer, ITEMS, batch_size=3, add_bos=bos)
    assert list(scores.columns) == zs.SCORE_COLUMNS
    assert scores[["item", "choice"]].values.tolist() == [
        [i, j] for i, item in enumerate(ITEMS) for j in range(len(item.choices))
    ]
    expected = [_reference_loglik(model, smol_tokenizer, c, k, bos) for item in ITEMS for c, k in item.requests()]
    np.testing.assert_allclose(scores["loglik"], expected, rtol=1e-5)
    n_tokens = [len(smol_tokenizer(k).input_ids) for item in ITEMS for _, k in item.requests()]
    assert scores["n_tokens"].tolist() == n_tokens
    assert scores["n_chars"].tolist() == [len(k.lstrip()) for item in ITEMS for _, k in item.requests()]


def test_scores_do_not_depend_on_batch_size(model, smol_tokenizer) -> None:
    one = zs.score_items(model, smol_tokenizer, ITEMS, batch_size=1)
    many = zs.score_items(model, smol_tokenizer, ITEMS, batch_size=16)
    np.testing.assert_allclose(one["loglik"], many["loglik"], rtol=1e-5)


def test_float64_scores_move_less_than_1e_5_nats_with_the_batch(model, smol_tokenizer) -> None:
    """evaluate.dtype: float64: an item's log-likelihood is the same at batch 1 and 16 to 1e-5 nats, absolute."""
    wide = copy.deepcopy(model).to(torch.float64)
    one = zs.score_items(wide, smol_tokenizer, ITEMS, batch_size=1)
    many = zs.score_items(wide, smol_tokenizer, ITEMS, batch_size=16)
    np.testing.assert_allclose(one["loglik"], many["loglik"], rtol=0, atol=1e-5)
    assert next(model.parameters()).dtype == torch.float32  # the fixture is left as it was


def test_long_context_is_truncated_from_the_left(model, smol_tokenizer) -> None:
    item = MCItem("word " * 700 + "The end is", (" near", " far away"), 0)
    assert len(smol_tokenizer(item.context).input_ids) > 512
    scores = zs.score_items(model, smol_tokenizer, [item, *ITEMS[:1]], batch_size=2)
    expected = [_reference_loglik(model, smol_tokenizer, item.context, k) for k in item.choices]
    np.testing.assert_allclose(scores["loglik"][:2], expected, rtol=1e-5)


def test_score_items_restores_training_mode(smol_tokenizer) -> None:
    torch.manual_seed(0)
    tiny = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=49152,
            hidden_size=8,
            intermediate_size=8,
            num_hidden_layers=1,
            num_attention_heads=1,
            num_key_value_heads=1,
        )
    )
    tiny.train()
    zs.score_items(tiny, smol_tokenizer, ITEMS[:1])
    assert tiny.training


class _PrefersToken(torch.nn.Module):
    """A "language model" whose next-token distribution always puts most mass on ``token``."""

    def __init__(self, token: int, vocab: int = 49152) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(vocab))
        self.bias.data[token] = 10.0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.bias.expand(*input_ids.shape, -1))  # (B, T, V)


def test_a_model_preferring_the_right_answer_scores_one(smol_tokenizer) -> None:
    yes = smol_tokenizer(" yes").input_ids[0]
    items = [MCItem(f"Passage {i}.\nQuestion: is it?\nAnswer:", (" no", " yes"), 1) for i in range(5)]
    scores = zs.score_items(_PrefersToken(yes), smol_tokenizer, items)
    assert scores["is_greedy"].tolist() == [False, True] * 5
    assert zs.accuracy(scores, items) == pytest.approx(
        {"acc": 1.0, "acc_stderr": 0.0, "acc_norm": 1.0, "acc_norm_stderr": 0.0, "n": 5}
    )
    flipped = [MCItem(item.context, item.choices, 0) for item in items]
    assert zs.accuracy(scores, flipped)["acc"] == 0.0


# ---------------------------------------------------------------------------------------------- metrics


def test_accuracy_on_a_hand_made_table() -> None:
    items = [
        MCItem("q0", (" a", " bbbbbbbbb"), 1),  # loglik picks a; per character picks bbbbbbbbb
        MCItem("q1", (" a", " b", " c"), 2),  # both pick c
        MCItem("q2", (" aaaaaaa", " b"), 0),  # both pick b
        MCItem("q3", (" a", " b"), 0),  # both pick a
    ]
    rows = [  # item, choice, loglik, n_tokens, n_chars, is_greedy
        (0, 0, -2.0, 1, 2, False), (0, 1, -5.0, 3, 10, False),
        (1, 0, -9.0, 1, 2, False), (1, 1, -8.0, 1, 2, False), (1, 2, -1.0, 1, 2, True),
        (2, 0, -30.0, 2, 8, False), (2, 1, -1.0, 1, 2, False),
        (3, 0, -1.0, 1, 2, True), (3, 1, -3.0, 1, 2, False),
    ]  # fmt: skip
    scores = pd.DataFrame(rows, columns=zs.SCORE_COLUMNS).sample(frac=1.0, random_state=0)  # order must not matter
    result = zs.accuracy(scores, items)
    assert result["acc"] == 0.5 and result["acc_norm"] == 0.75 and result["n"] == 4
    assert result["acc_stderr"] == pytest.approx(math.sqrt(0.5 * 0.5 / 3))
    assert result["acc_norm_stderr"] == pytest.approx(math.sqrt(0.75 * 0.25 / 3))
    with pytest.raises(ValueError, match="one row per"):
        zs.accuracy(scores[scores["item"] != 3], items)


def test_evaluate_tasks(model, smol_tokenizer) -> None:
    table = zs.evaluate_tasks(model, smol_tokenizer, ["winogrande", "arc_easy"], 4, seed=0, batch_size=8, device="cpu")
    assert table["task"].tolist() == ["winogrande", "arc_easy"]
    assert table["n"].tolist() == [4, 4]
    assert {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "chance", "majority", "hits", "seconds"} <= set(table)
    assert [sum(h) / len(h) for h in table["hits"]] == table["acc"].tolist()  # each item's outcome, in order
    assert table["chance"].tolist()[0] == 0.5  # winogrande: two options
    assert table["acc"].between(0, 1).all()
    again = zs.evaluate_tasks(model, smol_tokenizer, ["arc_easy"], 4, seed=0, batch_size=3, device="cpu")
    assert again["acc"].tolist() == table["acc"].tolist()[1:]


def test_acc_norm_divides_by_the_choice_without_its_leading_space_as_lm_eval_does() -> None:
    """lm-eval's acc_norm is loglik / len(choice), the target delimiter not counted: with " no" (-1.9) and
    " yes" (-2.7) that is -0.95 vs -0.90, so "yes"; counting the space (-0.63 vs -0.68) would pick "no"."""
    items = [zs.MCItem("Question? Answer:", (" no", " yes"), 1)]
    scores = pd.DataFrame(
        {"item": [0, 0], "choice": [0, 1], "loglik": [-1.9, -2.7], "n_tokens": [1, 1], "n_chars": [2, 3],
         "is_greedy": [False, False]}
    )  # fmt: skip
    result = zs.accuracy(scores, items)
    assert result["acc"] == 0.0 and result["acc_norm"] == 1.0


def test_the_floor_a_model_must_beat_is_chance_and_the_majority_class_rate() -> None:
    """BoolQ-like: 3 of 4 answers are "yes", so always answering "yes" scores 0.75, above chance (0.5)."""
    two = [zs.MCItem("q?", (" no", " yes"), label) for label in (1, 1, 1, 0)]
    assert zs.baselines(two) == {"chance": 0.5, "majority": 0.75}
    mixed = [zs.MCItem("q", ("a", "b"), 0), zs.MCItem("q", ("a", "b", "c", "d"), 2)]
    assert zs.baselines(mixed) == {"chance": 0.375, "majority": 0.5}
