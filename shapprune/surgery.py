"""Layer surgery that works across architectures: keep a subset of decoder layers.

The decoder layer list is found generically (``model.model.layers``, ``transformer.h``, ...),
rebuilt from the kept layers, re-indexed (every ``layer_idx`` / ``layer_id`` attribute) and the config is
fixed (``num_hidden_layers`` and, where present and not derived, the per-layer ``layer_types``). Two
architecture facts live here and nowhere else: RWKV's embedding norm moves to whichever block runs first,
and RWKV's position-dependent fp16 rescaling is turned off (exactly; see :func:`_undo_position_rescaling`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from torch import nn

_KNOWN_PATHS = (
    "model.layers",
    "model.decoder.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.language_model.layers",
    "backbone.layers",  # Mamba, Mamba-2, Falcon-Mamba
    "rwkv.blocks",
)


def _get(obj: object, dotted: str) -> object | None:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_layers(model: nn.Module) -> tuple[nn.Module, str]:
    """Return ``(parent, attribute)`` such that ``getattr(parent, attribute)`` is the decoder ModuleList."""
    for path in _KNOWN_PATHS:
        found = _get(model, path)
        if isinstance(found, nn.ModuleList):
            parent_path, _, attr = path.rpartition(".")
            return _get(model, parent_path), attr  # type: ignore[return-value]
    n = getattr(_text_config(model), "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            parent_path, _, attr = name.rpartition(".")
            return (_get(model, parent_path) if parent_path else model), attr  # type: ignore[return-value]
    raise ValueError(
        f"cannot find the decoder layer list of {type(model).__name__}; add its path to surgery._KNOWN_PATHS"
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's decoder layers."""
    parent, attr = find_layers(model)
    return getattr(parent, attr)


def num_layers(model: nn.Module) -> int:
    """Number of decoder layers (players of the layer game)."""
    return len(decoder_layers(model))


def _text_config(model: nn.Module) -> object:
    config = model.config  # type: ignore[attr-defined]
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _check_mask(keep: Sequence[bool] | np.ndarray, n: int, allow_empty: bool = False) -> np.ndarray:
    keep = np.asarray(keep, dtype=bool)  # bool[L]
    if keep.shape != (n,):
        raise ValueError(f"mask has {keep.shape[-1] if keep.ndim else 0} entries but the model has {n} layers")
    if not keep.any() and not allow_empty:
        raise ValueError("mask drops every layer; keep at least one")
    return keep


# Per-layer position attributes, re-indexed after surgery (RWKV indexes its recurrent state by ``layer_id``).
_INDEX_ATTRS = ("layer_idx", "layer_id")
# Modules that belong to whichever layer runs first, not to one layer (RWKV's embedding norm sits in block 0).
_FIRST_LAYER_MODULES = ("pre_ln",)


def _set_layers(model: nn.Module, layers: list[nn.Module], layer_types: list | None, start: int = 0) -> None:
    parent, attr = find_layers(model)
    if layers and start == 0:
        for holder in getattr(parent, attr):
            for name in _FIRST_LAYER_MODULES:
                if holder is not layers[0] and name in holder._modules:
                    layers[0].add_module(name, holder._modules.pop(name))
    setattr(parent, attr, nn.ModuleList(layers))
    for new_idx, layer in enumerate(layers, start=start):
        for module in layer.modules():
            for index in _INDEX_ATTRS:
                if isinstance(getattr(module, index, None), int):
                    setattr(module, index, new_idx)
    config = _text_config(model)
    config.num_hidden_layers = len(layers)
    if layer_types is not None and not _derived(config, "layer_types"):
        config.layer_types = list(layer_types)


def _derived(config: object, name: str) -> bool:
    """A read-only config property (e.g. Mamba's ``layer_types``, computed from ``num_hidden_layers``)."""
    attr = getattr(type(config), name, None)
    return isinstance(attr, property) and attr.fset is None


def _undo_position_rescaling(model: nn.Module) -> None:
    """Turn off RWKV's inference rescaling, which depends on each layer's position (exact, not an approximation).

    At inference RWKV halves its residual stream after every ``rescale_every`` layers and divides each
    layer's output weights by 2**(position // rescale_every), an fp16 overflow guard. Dropping layers
    moves positions, so the halvings and the weights would disagree; with ``rescale_every = 0`` (and the
    weights restored) the model computes the same function without position-dependent state.
    """
    config = _text_config(model)
    every = int(getattr(config, "rescale_every", 0) or 0)
    if every <= 0:
        return
    for module in model.modules():
        if getattr(module, "layers_are_rescaled", False):
            for position, block in enumerate(module.blocks):
                for linear in (block.attention.output, block.feed_forward.value):
                    linear.weight.data.mul_(2 ** (position // every))
            module.layers_are_rescaled = False
    config.rescale_every = 0


def _snapshot(model: nn.Module) -> tuple[list[nn.Module], list | None, list[tuple[nn.Module, str, int]]]:
    _undo_position_rescaling(model)
    layers = list(decoder_layers(model))
    layer_types = getattr(_text_config(model), "layer_types", None)
    indices = [
        (m, index, getattr(m, index))
        for layer in layers
        for m in layer.modules()
        for index in _INDEX_ATTRS
        if isinstance(getattr(m, index, None), int)
    ]
    return layers, (list(layer_types) if layer_types is not None else None), indices


def keep_layers(model: nn.Module, keep: Sequence[bool] | np.ndarray) -> nn.Module:
    """Permanently keep only the layers where ``keep`` is True (in place); returns the model."""
    layers, layer_types, _ = _snapshot(model)
    keep = _check_mask(keep, len(layers))
    kept_types = [t for t, k in zip(layer_types, keep) if k] if layer_types is not None else None
    _set_layers(model, [layer for layer, k in zip(layers, keep) if k], kept_types)
    return model


@contextmanager
def kept_layers(model: nn.Module, keep: Sequence[bool] | np.ndarray, start: int = 0) -> Iterator[nn.Module]:
    """Temporarily run ``model`` with only the kept layers (dropped ones are skipped, not zeroed).

    An all-False mask is allowed here (embeddings straight into the final norm and head: the empty
    coalition of the layer game); :func:`keep_layers` refuses it. ``start`` is the position the first kept
    layer takes when ``start`` layers already ran (prefix reuse injects their output): it is then not
    the first layer, so it gets no first-layer module.
    """
    layers, layer_types, indices = _snapshot(model)
    keep = _check_mask(keep, len(layers), allow_empty=True)
    kept_types = [t for t, k in zip(layer_types, keep) if k] if layer_types is not None else None
    config = _text_config(model)
    n_before = config.num_hidden_layers
    _set_layers(model, [layer for layer, k in zip(layers, keep) if k], kept_types, start)
    try:
        yield model
    finally:
        _set_layers(model, layers, layer_types)
        for module, index, value in indices:
            setattr(module, index, value)
        config.num_hidden_layers = n_before
