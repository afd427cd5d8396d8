"""Many layer-dropped variants of one model: each must score exactly as the pruned model would."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from shapprune.evaluation import variants
from shapprune.evaluation.zero_shot import MCItem, accuracy, score_items
from shapprune.scoring import window_nll
from shapprune.surgery import keep_layers
from tests.conftest import tiny_llama


@pytest.fixture(scope="module")
def model():
    return tiny_llama(n_layers=5, seed=3)


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return np.random.default_rng(0).integers(3, 49152, size=(4, 24), dtype=np.int64)


def pruned_copy(model, dropped: list[int]):
    return keep_layers(copy.deepcopy(model), variants.keep_mask(5, dropped))


def test_keep_mask() -> None:
    assert variants.keep_mask(5, [1, 3]).tolist() == [True, False, True, False, True]
    assert variants.keep_mask(3, []).all()


@pytest.mark.slow  # several seconds: the full tier runs it
def test_perplexities_equal_those_of_the_pruned_models(model, windows) -> None:
    sets = [[], [0], [2, 3], [1, 2, 4]]
    masks = np.stack([variants.keep_mask(5, s) for s in sets])
    seen = []
    rows = variants.variant_perplexities(
        model, {"a": windows, "b": windows[:2]}, masks, batch_size=3, progress=lambda c, d: seen.append((c, d))
    )
    for s, row in zip(sets, rows):
        pruned = pruned_copy(model, s)
        assert row["ppl_a"] == pytest.approx(window_nll(pruned, windows, 4).perplexity, rel=1e-5)
        assert row["ppl_b"] == pytest.approx(window_nll(pruned, windows[:2], 4).perplexity, rel=1e-5)
    assert len({round(r["ppl_a"], 3) for r in rows}) == 4  # the variants differ
    assert seen[-1] == ("b", 4) and len(seen) == 8


@pytest.mark.slow  # several seconds: the full tier runs it
def test_zero_shot_equals_the_pruned_model(model, smol_tokenizer) -> None:
    items = {
        "t1": [MCItem("The sky is", (" blue", " green"), 0), MCItem("One plus one is", (" two", " three"), 0)],
        "t2": [MCItem("Water is", (" wet", " dry", " loud"), 2), MCItem("Fire is", (" hot", " cold"), 1)],
    }
    got = variants.variant_zero_shot(model, smol_tokenizer, variants.keep_mask(5, [1]), items, batch_size=2)
    pruned = pruned_copy(model, [1])
    want = {t: accuracy(score_items(pruned, smol_tokenizer, its, 2), its) for t, its in items.items()}
    assert got["acc_t1"] == want["t1"]["acc"] and got["acc_t2"] == want["t2"]["acc"]
    assert got["mean_acc"] == pytest.approx((want["t1"]["acc"] + want["t2"]["acc"]) / 2)
    se = np.array([want["t1"]["acc_stderr"], want["t2"]["acc_stderr"]])
    assert got["mean_acc_se"] == pytest.approx(np.sqrt((se**2).sum()) / 2)
    assert len(model.model.layers) == 5  # the model is restored


def test_tokens_per_second_is_the_best_repeat_of_the_kept_layers_and_leaves_the_model_whole(
    model, windows, monkeypatch
) -> None:
    with torch.no_grad():
        before = model(input_ids=torch.as_tensor(windows)).logits
    clock = iter([10.0, 10.5, 20.0, 20.25, 30.0, 30.4])  # three forwards: 0.5 s, 0.25 s, 0.4 s on a fake clock
    monkeypatch.setattr(variants.time, "perf_counter", lambda: next(clock))
    calls = [0] * 5
    hooks = [
        layer.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, layer in enumerate(model.model.layers)
    ]
    speed = variants.tokens_per_second(model, windows, variants.keep_mask(5, [0, 4]), repeats=3)
    for hook in hooks:
        hook.remove()
    assert speed == windows.size / 0.25  # the best of the three
    assert calls == [0, 3, 3, 3, 0]  # layers 0 and 4 dropped while it ran
    monkeypatch.undo()
    with torch.no_grad():
        assert torch.equal(model(input_ids=torch.as_tensor(windows)).logits, before)
