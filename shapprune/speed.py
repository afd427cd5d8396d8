"""Wall-clock checks of the speedup target: one decoder layer's time against the non-layer parts, and the
pruned model's prefill speed against the full model's (a few forwards each: seconds on a small model).

A forward is timed whole, and each decoder layer inside it by hooks; the non-layer parts (embedding, rotary
tables, masks, final norm, ``lm_head``) are the rest. Timings move with whatever else the machine runs, so
each figure comes with its spread (min / median / max over the repeats).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from shapprune.surgery import decoder_layers


def _spread(xs: Sequence[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def probe_ids(model: torch.nn.Module, n_windows: int = 3, seq_len: int = 128) -> torch.Tensor:
    """Token ids to time on, ``[n_windows, seq_len]``: a fixed pattern (timing does not depend on the text)."""
    vocab = int(model.get_input_embeddings().num_embeddings)
    base = torch.arange(n_windows * seq_len, dtype=torch.long).reshape(n_windows, seq_len)
    return (base * 7919 + 13) % vocab


@torch.no_grad()
def _forward_s(model: torch.nn.Module, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    model(input_ids=ids, use_cache=False)
    return time.perf_counter() - start


@dataclass(frozen=True)
class LayerCost:
    """One layer's time over the non-layer parts', per window (``ratios``), and the times behind it."""

    ratios: list[float]
    layer_s: list[float]  # mean layer's seconds per window
    other_s: list[float]  # non-layer seconds per window

    def as_dict(self) -> dict:
        return {
            "layer_cost": _spread(self.ratios),
            "layer_ms": _spread([1e3 * s for s in self.layer_s]),
            "non_layer_ms": _spread([1e3 * s for s in self.other_s]),
            "windows": len(self.ratios),
        }

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)


@torch.no_grad()
def measure_layer_cost(model: torch.nn.Module, ids: torch.Tensor, warmup: int = 1) -> LayerCost:
    """Time one forward per window of ``ids`` ``[n, T]`` (batch 1), each decoder layer by hooks."""
    layers = decoder_layers(model)
    spans: list[float] = []
    starts: dict[int, float] = {}

    def pre(module: torch.nn.Module, args: object) -> None:
        starts[id(module)] = time.perf_counter()

    def post(module: torch.nn.Module, args: object, output: object) -> None:
        spans.append(time.perf_counter() - starts[id(module)])

    handles = [h for layer in layers for h in (layer.register_forward_pre_hook(pre), layer.register_forward_hook(post))]
    try:
        for _ in range(warmup):
            _forward_s(model, ids[:1])
        ratios, layer_s, other_s = [], [], []
        for row in ids:
            spans.clear()
            total = _forward_s(model, row[None])
            in_layers = sum(spans)
            mean_layer = in_layers / len(layers)
            other = max(total - in_layers, 1e-9)
            ratios.append(mean_layer / other)
            layer_s.append(mean_layer)
            other_s.append(other)
    finally:
        for h in handles:
            h.remove()
    return LayerCost(ratios, layer_s, other_s)


@torch.no_grad()
def measure_speedup(
    full: torch.nn.Module, pruned: torch.nn.Module, ids: torch.Tensor, repeats: int = 3, warmup: int = 1
) -> dict:
    """Prefill tokens/s of ``pruned`` over ``full`` on ``ids`` ``[n, T]``: the two timed in turn, ``repeats``
    times (so both see the same load), each repeat's ratio of the summed times; min / median / max."""
    for _ in range(warmup):
        _forward_s(full, ids[:1])
        _forward_s(pruned, ids[:1])
    ratios, full_s, pruned_s = [], [], []
    for _ in range(repeats):
        a = sum(_forward_s(full, row[None]) for row in ids)
        b = sum(_forward_s(pruned, row[None]) for row in ids)
        ratios.append(a / b)
        full_s.append(a)
        pruned_s.append(b)
    tokens = ids.numel()
    return {
        "speedup": _spread(ratios),
        "full_tokens_per_s": statistics.median(tokens / s for s in full_s),
        "pruned_tokens_per_s": statistics.median(tokens / s for s in pruned_s),
        "repeats": repeats,
        "tokens": tokens,
    }
