"""Held-out quality of many layer-dropped variants of one model: perplexity, zero-shot accuracy and speed.

Variants are keep-masks over the decoder layers; dropped layers are skipped, never zeroed, so a variant
scores exactly as the pruned model ``prune`` would save. Perplexities of all variants are computed in one
pass with prefix reuse (masks sharing their first layers share those layers' hidden states).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from shapprune.evaluation.zero_shot import MCItem, accuracy, item_hits, score_items
from shapprune.prefix import score_with_prefix_reuse
from shapprune.surgery import kept_layers
from shapprune.types import Mask, TokenWindows


def keep_mask(n_layers: int, dropped: Sequence[int]) -> np.ndarray:
    """``bool[L]``: True for the layers a variant keeps."""
    return ~np.isin(np.arange(n_layers), np.asarray(dropped, dtype=np.int64))


def variant_perplexities(
    model: nn.Module,
    corpora: Mapping[str, TokenWindows],
    masks: Mask,
    batch_size: int = 16,
    cache_mib: float = 512.0,
    progress: Callable[[str, int], None] | None = None,
    per_window: bool = False,
) -> list[dict]:
    """``[{"ppl_<corpus>": ...}]`` for every keep-mask row of ``masks`` (``bool[n, L]``) on every corpus.

    ``progress(corpus, masks_done)`` is called after each mask. With ``per_window`` each row also holds
    ``window_nll_<corpus>``: every window's summed NLL (a list), for paired comparisons.
    """
    out: list[dict] = [{} for _ in range(len(masks))]
    for name, windows in corpora.items():
        step = None if progress is None else (lambda _row, _nll, done, name=name: progress(name, done))
        nlls, _ = score_with_prefix_reuse(model, windows, masks, batch_size, cache_mib, step)
        for row, nll in zip(out, nlls):
            row[f"ppl_{name}"] = nll.perplexity
            if per_window:
                row[f"window_nll_{name}"] = list(nll.windows)
    return out


def tokens_per_second(model: nn.Module, windows: TokenWindows, keep: np.ndarray, repeats: int = 2) -> float:
    """Forward tokens/s of the kept layers on ``windows`` (``int64[n, T]``), best of ``repeats``."""
    device = next(model.parameters()).device
    ids = torch.as_tensor(windows, device=device)  # [n, T]
    best = math.inf
    with kept_layers(model, keep), torch.inference_mode():
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
    return windows.size / best


def variant_zero_shot(
    model: nn.Module,
    tokenizer: object,
    keep: np.ndarray,
    items: Mapping[str, Sequence[MCItem]],
    batch_size: int = 16,
    per_item: bool = False,
) -> dict:
    """Mean acc, acc_norm and the mean's standard error over ``items``' tasks, plus ``acc_<task>``.

    The same items must be used for every variant (draw them once) so that differences are paired; with
    ``per_item`` the result also holds ``hits_<task>``, each item's 0/1 outcome by acc (a list).
    """
    rows, hits = {}, {}
    with kept_layers(model, keep):
        for task, task_items in items.items():
            scores = score_items(model, tokenizer, task_items, batch_size)
            rows[task] = accuracy(scores, task_items)
            hits[f"hits_{task}"] = item_hits(scores, task_items)[0].astype(int).tolist()
    acc = np.array([r["acc"] for r in rows.values()])
    se = np.array([r["acc_stderr"] for r in rows.values()])
    return (
        {
            "mean_acc": float(acc.mean()),
            "mean_acc_norm": float(np.mean([r["acc_norm"] for r in rows.values()])),
            "mean_acc_se": float(np.sqrt((se**2).sum()) / len(se)),  # tasks are independent samples
        }
        | {f"acc_{t}": float(r["acc"]) for t, r in rows.items()}
        | (hits if per_item else {})
    )
