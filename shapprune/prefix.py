"""Prefix reuse: masks that keep the same first j layers share the hidden states entering layer j.

Masks are visited in lexicographic order (a depth-first walk of their trie). For each mask the
hidden states entering the deepest cached layer on its prefix are injected into the first layer
that still has to run (a forward pre-hook), and the outputs of the layers that do run are cached
for the masks that follow (forward hooks). Works for any HF decoder whose layers take the hidden
states as first argument; the rest of the forward (embeddings, masks, rotary, norm, head) is the
model's own. Results are bit-identical to running each mask from scratch with the same batches.

A mask may come with a *signature* (int[L], default the mask itself): layer ``i``'s identity, so that states
entering layer ``j`` are shared exactly when ``signature[:j]`` is equal. A game that also changes weights per
mask (the repaired game rewrites the projection before each cut) encodes those changes in it. :meth:`pin`
keeps the full model's states (every layer kept and unchanged, signature all ones) for every later mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from shapprune.scoring import NLL, nll_of_logits, window_nll
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
        self._sig: np.ndarray | None = None  # signature of the mask whose states are cached
        self._cache: dict[int, list[torch.Tensor]] = {}  # depth j -> per-batch states entering layer j
        self._pinned: dict[int, list[torch.Tensor]] = {}  # the full model's states (see pin), never evicted

    def _state_bytes(self) -> int:
        config = self.model.config
        hidden = (config.get_text_config() if hasattr(config, "get_text_config") else config).hidden_size
        itemsize = next(self.model.parameters()).element_size()
        return int(self.windows.size * hidden * itemsize)

    def _max_states(self) -> int:
        return max(0, int(self.cache_mib * 2**20 // max(1, self._state_bytes())))

    def _reusable_depth(self, bits: np.ndarray, sig: np.ndarray) -> tuple[int, int]:
        """Deepest j whose states this mask shares (``sig[:j]`` equal) with a kept layer after it: in the rolling
        cache and in the pinned full model's states (0 where none)."""
        if not bits.any():
            return 0, 0
        last_kept = int(np.flatnonzero(bits)[-1])
        depths = []
        for cached, cache in ((self._sig, self._cache), (self._full_sig(), self._pinned)):
            if cached is None or not cache:
                depths.append(0)
                continue
            diff = np.flatnonzero(sig != cached)
            common = int(diff[0]) if len(diff) else self._n
            depths.append(max((j for j in cache if j <= min(common, last_kept)), default=0))
        return depths[0], depths[1]

    def _full_sig(self) -> np.ndarray | None:
        return np.ones(self._n, dtype=np.int64) if self._pinned else None

    def pin(self) -> NLL:
        """Score the full model and keep its states entering every layer (as many as the cache holds, evenly
        spaced) for every later mask whose signature starts like the full model's; returns the full NLL."""
        room = min(self._max_states(), self._n - 1)
        depths = np.unique(np.linspace(1, self._n - 1, room).round().astype(int)) if room else []
        self._pinned = {}
        nll, stored = self._forward(np.ones(self._n, dtype=bool), 0, False, set(map(int, depths)))
        self._pinned = stored
        return nll

    def score(self, mask: np.ndarray, signature: np.ndarray | None = None) -> NLL:
        """NLL of one mask, reusing and refreshing the prefix cache (``signature``: see the module docstring)."""
        bits = np.asarray(mask, dtype=bool)
        sig = bits.astype(np.int64) if signature is None else np.asarray(signature, dtype=np.int64)
        if sig.shape != bits.shape:
            raise ValueError(f"prefix: signature of shape {sig.shape} for a mask of shape {bits.shape}")
        rolling, full = self._reusable_depth(bits, sig)
        depth, pinned = max(rolling, full), full > rolling
        self.stats.full_layers += int(bits.sum())
        self.stats.run_layers += int(bits[depth:].sum())
        self.stats.cache_hits += int(depth > 0)
        # states entering layer j for j > depth on this mask's path; keep the budget, deepest first
        wanted = [j for j in range(depth + 1, self._n) if bits[j - 1]]
        keep_old = {j: s for j, s in self._cache.items() if j <= rolling}
        room = max(0, self._max_states() - len(self._pinned) - len(keep_old))
        store = set(wanted[-room:]) if room else set()
        nll, new_cache = self._forward(bits, depth, pinned, store)
        self._cache = keep_old | new_cache
        self._sig = sig
        return nll

    def _forward(
        self, bits: np.ndarray, depth: int, pinned: bool, store: set[int]
    ) -> tuple[NLL, dict[int, list[torch.Tensor]]]:
        """Run the kept layers from ``depth`` on (states injected from the cache or the pinned ones), keeping the
        states entering each layer in ``store``; returns the NLL and those states."""
        run = [i for i in range(depth, self._n) if bits[i]]
        new_cache: dict[int, list[torch.Tensor]] = {j: [] for j in store}
        source = self._pinned if pinned else self._cache
        suffix = np.zeros(self._n, dtype=bool)
        suffix[run] = True
        total, tokens, per_window = 0.0, 0, []
        for b, start in enumerate(range(0, len(self.windows), self.batch_size)):
            ids = torch.as_tensor(self.windows[start : start + self.batch_size], device=self._device())
            handles = []
            if depth > 0:
                state = source[depth][b]
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
        return NLL(total, tokens, tuple(per_window)), new_cache

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


def full_and_scorer(
    model: nn.Module, windows: TokenWindows, batch_size: int, cache_mib: float, reuse: bool
) -> tuple[NLL, PrefixScorer | None]:
    """The full model's NLL and, with ``reuse``, a scorer holding the full model's states (pinned by that same
    forward); without, no scorer."""
    if not reuse:
        return window_nll(model, windows, batch_size), None
    scorer = PrefixScorer(model, windows, batch_size, cache_mib)
    return scorer.pin(), scorer


def nlls_by_row(masks: Mask, nll: Callable[[np.ndarray], NLL], trie: bool) -> list[NLL]:
    """``nll(mask)`` of every row of ``masks`` (bool[n, L]), in row order; visited in trie order when ``trie``."""
    out: list[NLL | None] = [None] * len(masks)
    for row in lexicographic_order(masks) if trie else range(len(masks)):
        out[row] = nll(masks[row])
    return out  # type: ignore[return-value]


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
