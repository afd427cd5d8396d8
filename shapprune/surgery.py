"""Layer surgery that works across architectures: keep a subset of decoder layers.

The decoder layer list is found generically (``model.model.layers``, ``transformer.h``, ...),
rebuilt from the kept layers, re-indexed (every ``layer_idx`` attribute) and the config is fixed
(``num_hidden_layers`` and, where present, the per-layer ``layer_types``).
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


def _set_layers(model: nn.Module, layers: list[nn.Module], layer_types: list | None) -> None:
    parent, attr = find_layers(model)
    setattr(parent, attr, nn.ModuleList(layers))
    for new_idx, layer in enumerate(layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_idx
    config = _text_config(model)
    config.num_hidden_layers = len(layers)
    if layer_types is not None:
        config.layer_types = list(layer_types)


def _snapshot(model: nn.Module) -> tuple[list[nn.Module], list | None, list[tuple[nn.Module, int]]]:
    layers = list(decoder_layers(model))
    layer_types = getattr(_text_config(model), "layer_types", None)
    indices = [(m, m.layer_idx) for layer in layers for m in layer.modules() if hasattr(m, "layer_idx")]
    return layers, (list(layer_types) if layer_types is not None else None), indices


def keep_layers(model: nn.Module, keep: Sequence[bool] | np.ndarray) -> nn.Module:
    """Permanently keep only the layers where ``keep`` is True (in place); returns the model."""
    layers, layer_types, _ = _snapshot(model)
    keep = _check_mask(keep, len(layers))
    kept_types = [t for t, k in zip(layer_types, keep) if k] if layer_types is not None else None
    _set_layers(model, [layer for layer, k in zip(layers, keep) if k], kept_types)
    return model


@contextmanager
def kept_layers(model: nn.Module, keep: Sequence[bool] | np.ndarray) -> Iterator[nn.Module]:
    """Temporarily run ``model`` with only the kept layers (dropped ones are skipped, not zeroed).

    An all-False mask is allowed here (embeddings straight into the final norm and head: the empty
    coalition of the layer game); :func:`keep_layers` refuses it.
    """
    layers, layer_types, indices = _snapshot(model)
    keep = _check_mask(keep, len(layers), allow_empty=True)
    kept_types = [t for t, k in zip(layer_types, keep) if k] if layer_types is not None else None
    config = _text_config(model)
    n_before = config.num_hidden_layers
    _set_layers(model, [layer for layer, k in zip(layers, keep) if k], kept_types)
    try:
        yield model
    finally:
        _set_layers(model, layers, layer_types)
        for module, idx in indices:
            module.layer_idx = idx
        config.num_hidden_layers = n_before
