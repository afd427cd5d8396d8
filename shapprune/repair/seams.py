"""Where a cut is repaired: runs of dropped layers and the weight that absorbs a linear map at each seam.

A *run* is a maximal block ``[start, stop)`` of consecutive dropped layers. For a run with ``start > 0``
the map is merged into the output projection of the MLP of layer ``start - 1`` (found by name, see
:data:`MLP_OUT_NAMES`). A run that starts at layer 0 has no MLP before it: its map is folded into the
input embedding when that embedding is *untied* from the LM head, and the run is left unrepaired
(reported as skipped) when it is tied, since folding would also change the head (SmolLM2 ties).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from shapprune.surgery import decoder_layers, find_layers

# Output projection of the MLP, relative to a decoder layer (first match wins).
MLP_OUT_NAMES = (
    "mlp.down_proj",  # LLaMA, Qwen, Mistral, Gemma, Phi-3
    "mlp.dense_4h_to_h",  # GPT-NeoX, Falcon
    "mlp.fc2",  # Phi
    "fc2",  # OPT
    "mlp.c_proj",  # GPT-2 (Conv1D: weight is [in, out])
    "mixer.out_proj",  # Mamba, Mamba-2, Falcon-Mamba (the mixer is the whole block)
    "feed_forward.value",  # RWKV (gated by its receptance: found, then refused as not additive)
)


@dataclass(frozen=True)
class Seam:
    """One run ``[start, stop)`` of dropped layers and the module that absorbs its map."""

    start: int
    stop: int
    target: str  # dotted name inside the model, e.g. "model.layers.3.mlp.down_proj" or "model.embed_tokens"
    module: nn.Module


def dropped_runs(keep: Sequence[bool] | np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs ``(start, stop)`` of consecutive False entries of ``keep`` (bool[L]), in order."""
    keep = np.asarray(keep, dtype=bool)  # bool[L]
    runs, start = [], None
    for i, k in enumerate(keep):
        if not k and start is None:
            start = i
        elif k and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(keep)))
    return runs


def layers_prefix(model: nn.Module) -> str:
    """Dotted name of the decoder layer list inside ``model`` (e.g. ``"model.layers"``)."""
    layers = decoder_layers(model)
    for name, module in model.named_modules():
        if module is layers:
            return name
    parent, attr = find_layers(model)
    raise ValueError(f"decoder layers {attr} of {type(parent).__name__} are not a submodule of the model")


def mlp_out_proj(layer: nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` of the MLP output projection of one decoder layer (nn.Linear or GPT-2 Conv1D)."""
    for name in MLP_OUT_NAMES:
        module: object = layer
        for part in name.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, (nn.Linear, Conv1D)):
            return name, module
    raise ValueError(
        f"cannot find the MLP output projection of {type(layer).__name__}; "
        f"add its name (relative to the decoder layer) to shapprune.repair.seams.MLP_OUT_NAMES"
    )


def embeddings_tied(model: nn.Module) -> bool:
    """Whether the input embedding shares its weight with the LM head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embed = model.get_input_embeddings()
    return head is not None and head.weight is embed.weight


def embedding_name(model: nn.Module) -> str:
    embed = model.get_input_embeddings()
    return next(name for name, module in model.named_modules() if module is embed)


def seam_of(model: nn.Module, start: int, stop: int) -> Seam:
    """The seam of run ``[start, stop)``: layer ``start - 1``'s MLP output projection, or the input embedding."""
    if start == 0:
        return Seam(start, stop, embedding_name(model), model.get_input_embeddings())
    name, module = mlp_out_proj(decoder_layers(model)[start - 1])
    return Seam(start, stop, f"{layers_prefix(model)}.{start - 1}.{name}", module)


@torch.no_grad()
def merge_map(module: nn.Module, t: torch.Tensor) -> None:
    """Make ``module``'s output ``y`` become ``y @ t`` (t: [d, d]) by rewriting its weights in place.

    nn.Linear (weight [d, m]): ``W' = t^T W``, ``b' = t^T b``; GPT-2 Conv1D (weight [m, d]): ``W' = W t``,
    ``b' = b t``; nn.Embedding (weight [V, d]): ``E' = E t``. Computed in float64, stored in the weight dtype.
    """
    t = t.to(device=module.weight.device, dtype=torch.float64)  # [d, d]
    w = module.weight.double()
    if isinstance(module, nn.Linear):
        module.weight.copy_(t.T @ w)  # [d, m]
        if module.bias is not None:
            module.bias.copy_(module.bias.double() @ t)  # [d]
    elif isinstance(module, (Conv1D, nn.Embedding)):
        module.weight.copy_(w @ t)  # [m, d] or [V, d]
        if getattr(module, "bias", None) is not None:
            module.bias.copy_(module.bias.double() @ t)  # [d]
    else:
        raise TypeError(f"cannot merge a linear map into {type(module).__name__}")


def projection_matrix(module: nn.Module) -> torch.Tensor:
    """A projection as the float64 matrix ``P`` [m(+1), d] with ``output = [input, 1] @ P`` (the 1 if it has a bias)."""
    if isinstance(module, nn.Linear):
        w = module.weight.detach().double().T  # [m, d]
    elif isinstance(module, Conv1D):
        w = module.weight.detach().double()  # [m, d]
    else:
        raise TypeError(f"cannot refit {type(module).__name__}: only nn.Linear and Conv1D projections")
    bias = getattr(module, "bias", None)
    return w if bias is None else torch.cat([w, bias.detach().double()[None]])


@torch.no_grad()
def set_projection(module: nn.Module, p: torch.Tensor) -> None:
    """Write ``P`` [m(+1), d] (see :func:`projection_matrix`) into ``module``'s weight and bias, in their dtype."""
    p = p.to(device=module.weight.device, dtype=torch.float64)
    m = p.shape[0] - (getattr(module, "bias", None) is not None)
    module.weight.copy_(p[:m].T if isinstance(module, nn.Linear) else p[:m])
    if m < p.shape[0]:
        module.bias.copy_(p[m])
