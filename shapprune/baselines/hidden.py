"""Hidden states entering every decoder layer, reduced on the fly to token-averaged cosines and angles.

``h_l`` is the residual stream entering layer ``l`` (``h_L`` leaves the last layer, before the final
norm). Captured with forward pre-hooks, so it works for any HF decoder whose layers take the hidden
states first; only per-token row-wise cosines are formed (never a tokens x tokens matrix).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from shapprune.surgery import decoder_layers
from shapprune.types import TokenWindows


def _hidden(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[index]


def _pre_capture(sink: list[torch.Tensor]) -> Callable:
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        sink.append((args[0] if args else kwargs["hidden_states"]).detach())

    return hook


def _post_capture(sink: list[torch.Tensor]) -> Callable:
    def hook(module: nn.Module, args: tuple, output: object) -> None:
        sink.append(_hidden(output).detach())

    return hook


@torch.inference_mode()
def layer_states(model: nn.Module, windows: TokenWindows, batch_size: int = 16) -> Iterator[torch.Tensor]:
    """Per batch, the fp32 states ``[L+1, b*T, d]`` entering each layer plus the last layer's output."""
    layers = list(decoder_layers(model))
    body = getattr(model, "base_model", model)  # skip the LM head when the model exposes its body
    device = next(model.parameters()).device
    for start in range(0, len(windows), batch_size):
        ids = torch.as_tensor(windows[start : start + batch_size], device=device)  # [b, T]
        sinks: list[list[torch.Tensor]] = [[] for _ in range(len(layers) + 1)]
        handles = [
            layer.register_forward_pre_hook(_pre_capture(sinks[i]), with_kwargs=True) for i, layer in enumerate(layers)
        ]
        handles.append(layers[-1].register_forward_hook(_post_capture(sinks[-1])))
        try:
            body(input_ids=ids, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        states = torch.stack([s[0] for s in sinks])  # [L+1, b, T, d]
        yield states.float().reshape(len(sinks), -1, states.shape[-1])  # [L+1, b*T, d]


def mean_cosines(model: nn.Module, windows: TokenWindows, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Token-averaged ``cos(h_i, h_j)`` and angular distance ``arccos(cos)/pi``, both ``float[L+1, L+1]``."""
    cos_sum: torch.Tensor | None = None
    ang_sum: torch.Tensor | None = None
    tokens = 0
    for states in layer_states(model, windows, batch_size):  # [L+1, N, d]
        unit = torch.nn.functional.normalize(states, dim=-1)  # [L+1, N, d]
        cos = torch.einsum("ind,jnd->ijn", unit, unit).clamp(-1.0, 1.0).double()  # [L+1, L+1, N]
        c, a = cos.sum(-1), (torch.arccos(cos) / torch.pi).sum(-1)  # [L+1, L+1]
        cos_sum = c if cos_sum is None else cos_sum + c
        ang_sum = a if ang_sum is None else ang_sum + a
        tokens += states.shape[1]
    if cos_sum is None or ang_sum is None:
        raise ValueError("no calibration windows; pass at least one window")
    return (cos_sum / tokens).cpu().numpy(), (ang_sum / tokens).cpu().numpy()
