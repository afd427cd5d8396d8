"""Shortened-LLaMA's Taylor+ criterion: first-order importance ``weight x gradient`` of the calibration loss.

``element`` (the paper) sums ``|w * dL/dw|`` over every weight of a layer; ``block`` takes ``|sum w * dL/dw|``,
the first-order loss change when the whole layer's weights are zeroed. Gradients are taken in fp32 (on a
copy when the model is in another dtype), batch by batch. The ``+``: the first ``protect_first`` and last
``protect_last`` layers are never removed (the paper keeps 4 and 2 of LLaMA-7B's 32); they score ``inf``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from shapprune.baselines.base import LayerScores, ranked
from shapprune.config import ConfigError
from shapprune.surgery import decoder_layers
from shapprune.types import TokenWindows

Reduce = Literal["element", "block"]


def taylor_importance(
    model: nn.Module, windows: TokenWindows, batch_size: int = 16, reduce: Reduce = "element"
) -> np.ndarray:
    """``float[L]``: first-order importance of every layer on the mean calibration NLL."""
    if reduce not in ("element", "block"):
        raise ValueError(f"taylor: unknown reduce '{reduce}'; use element or block")
    fp32 = next(model.parameters()).dtype == torch.float32
    work = model if fp32 else copy.deepcopy(model).float()
    flags = {p: p.requires_grad for p in work.parameters()}
    layers = list(decoder_layers(work))
    device = next(work.parameters()).device
    n_targets = windows.shape[0] * (windows.shape[1] - 1)
    try:
        for p in work.parameters():
            p.requires_grad_(False)
            p.grad = None
        for layer in layers:
            for p in layer.parameters():
                p.requires_grad_(True)
        with torch.enable_grad():
            for start in range(0, len(windows), batch_size):
                ids = torch.as_tensor(windows[start : start + batch_size], device=device)  # [b, T]
                logits = work(input_ids=ids, use_cache=False).logits  # [b, T, V]
                logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [b, T-1, V]
                nll = -logp.gather(-1, ids[:, 1:, None]).sum()
                (nll / n_targets).backward()
        out = np.zeros(len(layers))
        for i, layer in enumerate(layers):
            terms = [(p.detach().double() * p.grad.double()) for p in layer.parameters() if p.grad is not None]
            if reduce == "element":
                out[i] = float(sum(t.abs().sum() for t in terms))
            else:
                out[i] = abs(float(sum(t.sum() for t in terms)))
        return out
    finally:
        for p, flag in flags.items():
            p.grad = None
            p.requires_grad_(flag)


def taylor_scores(
    model: nn.Module,
    windows: TokenWindows,
    n_drops: Sequence[int] = (),
    batch_size: int = 16,
    reduce: Reduce = "element",
    protect_first: int = 4,
    protect_last: int = 2,
) -> LayerScores:
    """Rank layers by Taylor importance (lowest removed first), protected layers last."""
    raw = taylor_importance(model, windows, batch_size, reduce)
    n = len(raw)
    candidates = n - protect_first - protect_last
    if protect_first < 0 or protect_last < 0 or candidates < max(n_drops, default=1):
        raise ConfigError(
            f"taylor: protecting the first {protect_first} and last {protect_last} of {n} layers leaves {candidates} "
            f"to remove but {max(n_drops, default=1)} are asked for; lower score_layers.taylor_protect_first/last"
        )
    scores = raw.copy()
    scores[:protect_first] = np.inf
    scores[n - protect_last :] = np.inf
    return ranked("taylor", scores, n_drops, importance=raw.tolist(), reduce=reduce)
