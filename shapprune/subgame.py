"""A sub-game of the layer game: only chosen layers are players, every other layer is always kept.

The hidden states entering the first player layer do not depend on the mask, so they are computed once
(a forward pre-hook captures them and stops the forward pass) and injected into the first executed layer
of every later forward pass: a mask then costs only the layers from the first player on.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from shapprune.scoring import NLL, utility_from_nll, window_nll
from shapprune.surgery import decoder_layers, kept_layers
from shapprune.types import Mask, TokenWindows, Utility


class _Captured(Exception):
    """Raised by the capture hook to stop a forward pass once the wanted input is recorded."""


def _hidden_arg(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(args: tuple, kwargs: dict[str, Any], hidden: torch.Tensor) -> tuple[tuple, dict[str, Any]]:
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


@torch.inference_mode()
def capture_inputs(model: nn.Module, layer: int, windows: TokenWindows, batch_size: int) -> list[torch.Tensor]:
    """Hidden states entering decoder layer ``layer``, one ``[b, T, d]`` tensor per batch of windows."""
    device = next(model.parameters()).device
    target = decoder_layers(model)[layer]
    out: list[torch.Tensor] = []

    def hook(_module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        out.append(_hidden_arg(args, kwargs).detach().clone())  # [b, T, d]
        raise _Captured

    handle = target.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for start in range(0, len(windows), batch_size):
            ids = torch.as_tensor(windows[start : start + batch_size], device=device)  # [b, T]
            try:
                model(input_ids=ids, use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
    return out


@contextmanager
def _inject(layer: nn.Module, cached: list[torch.Tensor]):
    """Replace the hidden-states input of ``layer`` by the next cached batch on each call."""
    state = {"batch": 0}

    def hook(_module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        hidden = cached[state["batch"]]  # [b, T, d]
        state["batch"] += 1
        if _hidden_arg(args, kwargs).shape != hidden.shape:
            raise RuntimeError("sub-game: cached hidden states do not match this batch; use the same windows")
        return _with_hidden(args, kwargs, hidden)

    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@dataclass
class SubGame:
    """Players are ``players`` (decoder layer indices); all other layers are always kept.

    ``value(masks: bool[n, len(players)])`` equals :class:`shapprune.game.LayerGame` on the full masks
    that keep every non-player layer, at the cost of running only the layers from the first player on.
    """

    model: nn.Module
    windows: TokenWindows
    players: Sequence[int]
    utility: str = "ppl_ratio"
    batch_size: int = 16
    calls: int = 0
    full: NLL = field(init=False)

    def __post_init__(self) -> None:
        n_layers = len(decoder_layers(self.model))
        self.players = [int(p) for p in self.players]
        if not self.players or len(set(self.players)) != len(self.players):
            raise ValueError("sub-game: players must be distinct layer indices, at least one")
        if min(self.players) < 0 or max(self.players) >= n_layers:
            raise ValueError(f"sub-game: players must lie in [0, {n_layers - 1}]")
        self.n_layers = n_layers
        self.n_players = len(self.players)
        self.first = min(self.players)
        self._cache = capture_inputs(self.model, self.first, self.windows, self.batch_size)
        # if every player is dropped and no layer follows them, run the layer before the first player instead
        tail = [i for i in range(self.first, n_layers) if i not in set(self.players)]
        self._fallback = None
        if not tail and self.first > 0:
            self._fallback = capture_inputs(self.model, self.first - 1, self.windows, self.batch_size)
        self.full = window_nll(self.model, self.windows, self.batch_size)

    def layer_mask(self, mask: np.ndarray) -> np.ndarray:
        """The model-wide mask ``bool[L]`` of a player mask ``bool[P]`` (non-players kept)."""
        keep = np.ones(self.n_layers, dtype=bool)
        keep[self.players] = np.asarray(mask, dtype=bool)
        return keep

    def nll(self, mask: np.ndarray) -> NLL:
        """NLL of one player mask (counts as one LLM evaluation)."""
        self.calls += 1
        keep = self.layer_mask(mask)
        run = keep.copy()
        run[: self.first] = False  # layers before the first player are replaced by the cached input
        cache = self._cache
        if not run.any():
            if self._fallback is None:
                raise ValueError("sub-game: the mask drops every layer; keep at least one")
            run[self.first - 1] = True
            cache = self._fallback
        layers = decoder_layers(self.model)
        start = int(np.flatnonzero(run)[0])
        with _inject(layers[start], cache), kept_layers(self.model, run, int(keep[:start].sum())):
            return window_nll(self.model, self.windows, self.batch_size)

    def __call__(self, masks: Mask) -> Utility:
        return np.array([utility_from_nll(self.nll(m), self.full, self.utility) for m in masks])
