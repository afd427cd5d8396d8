"""Negative log-likelihood and perplexity of a (layer-masked) causal LM on token windows."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from shapprune.surgery import kept_layers
from shapprune.types import Mask, TokenWindows


@dataclass(frozen=True)
class NLL:
    """Summed next-token negative log-likelihood over ``tokens`` predicted tokens.

    ``windows`` holds each window's summed NLL, in window order, where the scorer kept them (paired
    comparisons of two models on the same windows); it takes no part in equality.
    """

    total: float
    tokens: int
    windows: tuple[float, ...] = field(default=(), compare=False, repr=False)

    @property
    def mean(self) -> float:
        return self.total / self.tokens if self.tokens else float("nan")

    @property
    def perplexity(self) -> float:
        mean = self.mean
        return math.exp(mean) if math.isfinite(mean) and mean < 700 else float("inf")


def nll_of_logits(logits: torch.Tensor, ids: torch.Tensor) -> NLL:
    """Summed next-token NLL of ``ids [b, T]`` under ``logits [b, T, V]`` (fp32 log-softmax)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [b, T-1, V]
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1).double()  # [b, T-1]
    return NLL(float(nll.sum()), nll.numel(), tuple(nll.sum(-1).tolist()))


@torch.inference_mode()
def window_nll(model: nn.Module, windows: TokenWindows, batch_size: int = 16) -> NLL:
    """Sum of next-token NLL over every window (fp32 log-softmax, whatever the model dtype)."""
    device = next(model.parameters()).device
    total, tokens, per_window = 0.0, 0, []
    for start in range(0, len(windows), batch_size):
        ids = torch.as_tensor(windows[start : start + batch_size], device=device)  # [b, T]
        nll = nll_of_logits(model(input_ids=ids, use_cache=False).logits, ids)
        total += nll.total
        tokens += nll.tokens
        per_window += nll.windows
    return NLL(total, tokens, tuple(per_window))


def masked_nll(model: nn.Module, windows: TokenWindows, mask: np.ndarray, batch_size: int = 16) -> NLL:
    """NLL of ``model`` with only the layers where ``mask`` is True executed."""
    with kept_layers(model, mask):
        return window_nll(model, windows, batch_size)


UTILITIES = ("ppl_ratio", "neg_log_ppl")


def utility_from_nll(nll: NLL, full: NLL, kind: str = "ppl_ratio") -> float:
    """The game's value of a mask: ``PPL_full / PPL_masked`` (the paper) or ``-log PPL_masked``."""
    if kind == "ppl_ratio":
        return math.exp(full.mean - nll.mean) if math.isfinite(nll.mean) else 0.0 if nll.mean > 0 else float("nan")
    if kind == "neg_log_ppl":
        return -nll.mean
    raise ValueError(f"score_masks.utility: unknown utility '{kind}'; use one of {', '.join(UTILITIES)}")


def score_masks(
    model: nn.Module,
    windows: TokenWindows,
    masks: Mask,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[NLL]:
    """NLL of every mask (rows of ``masks``), in order; ``progress(done, total)`` after each."""
    out = []
    for i, mask in enumerate(masks):
        out.append(masked_nll(model, windows, mask, batch_size))
        if progress is not None:
            progress(i + 1, len(masks))
    return out
