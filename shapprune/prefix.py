"""Prefix reuse: masks that keep the same first j layers share the hidden states entering layer j.

Masks are visited in lexicographic order (a depth-first walk of their trie). For each mask the
hidden states entering the deepest cached layer on its prefix are injected into the first layer
that still has to run (a forward pre-hook), and the outputs of the layers that do run are cached
for the masks that follow (forward hooks). Works for any HF decoder whose layers take the hidden
states as first argument; the rest of the forward (embeddings, masks, rotary, norm, head) is the
model's own. Results are bit-identical to running each mask from scratch with the same batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from shapprune.scoring import NLL, nll_of_logits
from shapprune.surgery import decoder_layers, kept_layers
from shapprune.types import Mask, TokenWindows


@dataclass
class PrefixStats:
    """Layer computations needed (``full_layers``: every kept layer of every mask) and actually run."""

    full_layers: int = 0
    run_layers: int = 0
    cache_hits: int = 0

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.run_layers / self.full_layers if self.full_layers else 0.0


def lexicographic_order(masks: Mask) -> np.ndarray:
    """Row order that visits masks as a depth-first walk of their prefix trie (kept-first)."""
    keys = [tuple(~row) for row in masks]  # False < True, so kept layers (True -> False) sort first
    return np.array(sorted(range(len(masks)), key=keys.__getitem__), dtype=np.int64)


def _hidden(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[index]


@dataclass
class PrefixScorer:
    """Scores masks with prefix reuse within a cache budget (MiB of cached hidden states)."""

    model: nn.Module
    windows: TokenWindows
    batch_size: int = 16
    cache_mib: float = 512.0
    stats: PrefixStats = field(default_factory=PrefixStats)

    def __post_init__(self) -> None:
        self._layers = list(decoder_layers(self.model))
        self._n = len(self._layers)
        self._bits: np.ndarray | None = None  # bits of the mask whose states are cached
        self._cache: dict[int, list[torch.Tensor]] = {}  # depth j -> per-batch states entering layer j

    def _state_bytes(self) -> int:
        config = self.model.config
        hidden = (config.get_text_config() if hasattr(config, "get_text_config") else config).hidden_size
        itemsize = next(self.model.parameters()).element_size()
        return int(self.windows.size * hidden * itemsize)

    def _max_states(self) -> int:
        return max(0, int(self.cache_mib * 2**20 // max(1, self._state_bytes())))

    def _reusable_depth(self, bits: np.ndarray) -> int:
        """Deepest cached j such that ``bits[:j]`` equals the cached mask's prefix and a kept layer follows."""
        if self._bits is None or not self._cache or not bits.any():
            return 0
        diff = np.flatnonzero(bits != self._bits)
        common = int(diff[0]) if len(diff) else self._n
        last_kept = int(np.flatnonzero(bits)[-1])
        candidates = [j for j in self._cache if j <= min(common, last_kept)]
        return max(candidates, default=0)

    def score(self, mask: np.ndarray) -> NLL:
        """NLL of one mask, reusing and refreshing the prefix cache."""
        bits = np.asarray(mask, dtype=bool)
        depth = self._reusable_depth(bits)
        run = [i for i in range(depth, self._n) if bits[i]]
        self.stats.full_layers += int(bits.sum())
        self.stats.run_layers += len(run)
        self.stats.cache_hits += int(depth > 0)
        # states entering layer j for j > depth on this mask's path; keep the budget, deepest first
        wanted = [j for j in range(depth + 1, self._n) if bits[j - 1]]
        budget = self._max_states()
        keep_old = {j: s for j, s in self._cache.items() if j <= depth}
        room = max(0, budget - len(keep_old))
        store = set(wanted[-room:]) if room else set()
        new_cache: dict[int, list[torch.Tensor]] = {j: [] for j in store}

        suffix = np.zeros(self._n, dtype=bool)
        suffix[run] = True
        total, tokens, per_window = 0.0, 0, []
        for b, start in enumerate(range(0, len(self.windows), self.batch_size)):
            ids = torch.as_tensor(self.windows[start : start + self.batch_size], device=self._device())
            handles = []
            if depth > 0:
                state = self._cache[depth][b]
                handles.append(self._layers[run[0]].register_forward_pre_hook(_injector(state), with_kwargs=True))
            for i in run:
                if i + 1 in store:
                    handles.append(self._layers[i].register_forward_hook(_capturer(new_cache[i + 1])))
            try:
                with kept_layers(self.model, suffix, int(bits[:depth].sum())), torch.inference_mode():
                    logits = self.model(input_ids=ids, use_cache=False).logits
            finally:
                for h in handles:
                    h.remove()
            nll = nll_of_logits(logits, ids)
            total += nll.total
            tokens += nll.tokens
            per_window += nll.windows
        self._cache = keep_old | new_cache
        self._bits = bits
        return NLL(total, tokens, tuple(per_window))

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device


def _injector(state: torch.Tensor) -> Callable:
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (state, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": state}

    return hook


def _capturer(sink: list[torch.Tensor]) -> Callable:
    def hook(module: nn.Module, args: tuple, output: object) -> None:
        sink.append(_hidden(output).detach())

    return hook


def score_with_prefix_reuse(
    model: nn.Module,
    windows: TokenWindows,
    masks: Mask,
    batch_size: int = 16,
    cache_mib: float = 512.0,
    progress: Callable[[int, NLL, int], None] | None = None,
) -> tuple[list[NLL], PrefixStats]:
    """NLL of every mask (in the given row order) computed in trie order with prefix reuse.

    ``progress(row, nll, done)`` is called after each mask, in visiting order.
    """
    scorer = PrefixScorer(model, windows, batch_size, cache_mib)
    out: list[NLL | None] = [None] * len(masks)
    for done, row in enumerate(lexicographic_order(masks), start=1):
        out[row] = scorer.score(masks[row])
        if progress is not None:
            progress(int(row), out[row], done)  # type: ignore[arg-type]
    return out, scorer.stats  # type: ignore[return-value]
