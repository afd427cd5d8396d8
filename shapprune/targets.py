"""Budget targets for ``prune``: from kept parameters, a shipped size or a speedup to the number of layers removed.

A target is met by the *smallest* number of removed layers ``k`` that reaches it. Parameter counts are exact,
read from the saved model's safetensors headers (no weights loaded): the decoder layers' own counts, and the
rest (embedding, norms, ``lm_head`` when it is not tied to the embedding). The layers a method removes are
known only after ``k``, so every figure for ``k`` assumes the *least favourable* ``k`` layers (the smallest or
cheapest): the target holds whichever set the method then chooses (LLaMA's and Gemma's layers are all the same
size, where this is exact).

The speedup is predicted, never measured here: tokens/s of the pruned over the full model under a cost model
``time = fixed + sum of the kept layers' costs`` (:class:`CostModel`). Its default is the matrix multiplies per
token (a layer's weights against the output projection's); the ``prune`` stage measures the real costs on its
machine and the real prefill speedup afterwards (:mod:`shapprune.speed`).

This module imports neither torch nor the params schema (the schema calls it).
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MB = 10**6  # the size targets' MB, as the README's sizes: 10^6 bytes
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_ST_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class InfeasibleTarget(ValueError):
    """A target no number of removed layers reaches; the message names the nearest feasible value."""


@dataclass(frozen=True)
class ModelStructure:
    """Exact parameter counts of a model: each decoder layer's, and everything outside the layers."""

    layer_params: tuple[int, ...]  # per decoder layer, in order
    other_params: int  # embedding, norms, lm_head when untied: the parameters no layer removal touches
    head_params: int  # the output projection's size (the embedding's when tied): its matmul's cost per token

    @property
    def n_layers(self) -> int:
        return len(self.layer_params)

    @property
    def total_params(self) -> int:
        return self.other_params + sum(self.layer_params)

    def kept_params(self, k: int) -> int:
        """Parameters left after removing ``k`` layers, at most: the ``k`` smallest layers removed."""
        return self.total_params - sum(sorted(self.layer_params)[:k])

    def size_mb(self, k: int, bytes_per_param: int) -> float:
        """The saved weights (safetensors tensor bytes) after removing ``k`` layers, in MB (10^6 bytes)."""
        return self.kept_params(k) * bytes_per_param / MB


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return {name: info["shape"] for name, info in header.items() if name != "__metadata__"}


def read_structure(model_dir: str | Path) -> ModelStructure:
    """The exact parameter counts of a ``save_pretrained`` folder from its safetensors headers (no weights read).

    A tied ``lm_head`` is not saved, so it counts once, as the embedding (as :func:`shapprune.models.parameter_count`).
    """
    folder = Path(model_dir)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors file to count the parameters of")
    shapes: dict[str, list[int]] = {}
    for file in files:
        shapes |= _safetensors_shapes(file)
    per_layer: dict[int, int] = {}
    other, head, embed = 0, None, None
    for name, shape in shapes.items():
        n = math.prod(shape)
        if m := _LAYER.search(name):
            per_layer[int(m.group(1))] = per_layer.get(int(m.group(1)), 0) + n
            continue
        other += n
        if name.endswith("lm_head.weight"):
            head = n
        elif name.endswith("embed_tokens.weight"):
            embed = n
    if sorted(per_layer) != list(range(len(per_layer))) or not per_layer:
        raise ValueError(f"{folder}: decoder layers {sorted(per_layer)} are not 0..L-1")
    return ModelStructure(tuple(per_layer[i] for i in range(len(per_layer))), other, head or embed or 0)


class LayerCount(int):
    """A decoder layer count that knows the saved model it counts: its exact parameter counts on demand.

    ``tasks.shared.model.saved_layer_count`` returns one, so ``params.prune.resolve_n_drop(n_layers)`` derives a
    budget target's ``k`` in every stage that calls it, from the same folder, without another argument.
    """

    model_dir: Path | None

    def __new__(cls, n: int, model_dir: str | Path | None = None) -> LayerCount:
        obj = super().__new__(cls, n)
        obj.model_dir = None if model_dir is None else Path(model_dir)
        return obj

    @property
    def structure(self) -> ModelStructure | None:
        return None if self.model_dir is None else read_structure(self.model_dir)


@dataclass(frozen=True)
class CostModel:
    """Time per token: ``fixed`` (embedding, final norm, lm_head) plus each kept layer's cost, in any one unit."""

    fixed: float
    per_layer: tuple[float, ...]

    @classmethod
    def from_flops(cls, structure: ModelStructure) -> CostModel:
        """Matrix multiplies per token: a layer's weights against the output projection's (norms, embedding
        lookup and attention over a short window are left out)."""
        return cls(float(structure.head_params), tuple(float(p) for p in structure.layer_params))

    @classmethod
    def uniform(cls, layer_cost: float, n_layers: int) -> CostModel:
        """Every layer costs ``layer_cost`` times the non-layer parts (a measured ratio, e.g. pruning.json's)."""
        return cls(1.0, (float(layer_cost),) * n_layers)

    @property
    def layer_cost(self) -> float:
        """The mean layer's cost over the non-layer parts'."""
        return sum(self.per_layer) / len(self.per_layer) / self.fixed if self.fixed > 0 else math.inf

    def speedup(self, k: int) -> float:
        """Predicted tokens/s after removing ``k`` layers over the full model's, at least (the ``k`` cheapest go)."""
        full = self.fixed + sum(self.per_layer)
        return full / (full - sum(sorted(self.per_layer)[:k]))


@dataclass(frozen=True)
class Target:
    """One budget: ``kind`` is ``params`` (kept parameters: a count, or a fraction of the full model's below 1),
    ``size_mb`` (the shipped weights, ``file`` ``hf``: the exported folder's safetensors) or ``speedup``
    (predicted tokens/s ratio)."""

    kind: str
    value: float
    file: str = "hf"

    def describe(self) -> str:
        if self.kind == "params":
            return f"params {self.value:g} of the full model's" if self.value < 1 else f"params {int(self.value):,}"
        if self.kind == "size_mb":
            return f"size_mb {self.value:g} ({self.file})"
        return f"speedup {self.value:g}x (predicted)"


@dataclass(frozen=True)
class Reached:
    """What removing a set of ``k`` layers reaches."""

    k: int
    kept_params: int
    fraction: float  # kept / full parameters
    size_mb: float  # the exported folder's weights in export.dtype
    speedup: float  # predicted

    def as_dict(self) -> dict:
        return {
            "n_drop": self.k,
            "kept_params": self.kept_params,
            "kept_fraction": round(self.fraction, 6),
            "size_mb": round(self.size_mb, 3),
            "predicted_speedup": round(self.speedup, 4),
        }


def reached(
    structure: ModelStructure, dropped: Sequence[int], bytes_per_param: int, cost: CostModel | None = None
) -> Reached:
    """What removing exactly the layers ``dropped`` reaches: kept parameters, size, predicted speedup."""
    cost = cost or CostModel.from_flops(structure)
    gone = set(dropped)
    kept = structure.total_params - sum(structure.layer_params[i] for i in gone)
    full = cost.fixed + sum(cost.per_layer)
    speedup = full / (full - sum(cost.per_layer[i] for i in gone))
    return Reached(len(gone), kept, kept / structure.total_params, kept * bytes_per_param / MB, speedup)


def _ceil(x: float, digits: int) -> float:
    return math.ceil(x * 10**digits - 1e-9) / 10**digits


def _floor(x: float, digits: int) -> float:
    return math.floor(x * 10**digits + 1e-9) / 10**digits


def n_drop_for(
    target: Target,
    structure: ModelStructure,
    bytes_per_param: int = 2,
    cost: CostModel | None = None,
    max_k: int | None = None,
    limit: str = "",
) -> int:
    """The smallest ``k`` in ``[1, max_k]`` (default ``L - 1``: one layer kept) whose removal meets ``target``.

    Raises :class:`InfeasibleTarget` naming the nearest feasible value when no such ``k`` exists: the full model
    already meets it, or even ``max_k`` layers removed do not (``limit`` says what sets ``max_k``).
    """
    n = structure.n_layers
    top = n - 1 if max_k is None else max(1, min(max_k, n - 1))
    cost = cost or CostModel.from_flops(structure)
    total = structure.total_params
    what = target.describe()

    if target.kind == "params":
        goal = target.value * total if target.value < 1 else target.value
        figure = structure.kept_params

        def met(k: int) -> bool:
            return figure(k) <= goal + 1e-6

        def show(k: int, up: bool) -> str:
            x = figure(k)
            if target.value < 1:
                frac = (_ceil if up else _floor)(x / total, 4)
                return f"{frac:g} ({x:,} parameters)"
            return f"{x:,}"
    elif target.kind == "size_mb":
        if target.file != "hf":
            raise InfeasibleTarget(f"size_mb: file '{target.file}' is not supported; use file: hf")

        def figure_mb(k: int) -> float:
            return structure.size_mb(k, bytes_per_param)

        def met(k: int) -> bool:
            return figure_mb(k) <= target.value + 1e-9

        def show(k: int, up: bool) -> str:
            return f"{(_ceil if up else _floor)(figure_mb(k), 3):g}"
    elif target.kind == "speedup":

        def met(k: int) -> bool:
            return cost.speedup(k) >= target.value - 1e-12

        def show(k: int, up: bool) -> str:  # up: a smaller ask is easier
            return f"{(_floor if up else _ceil)(cost.speedup(k), 3):g}"
    else:
        raise ValueError(f"unknown target kind '{target.kind}'")

    if met(0):
        raise InfeasibleTarget(
            f"{what} is met by the full model ({n} layers, {target.kind} {show(0, True)}): nothing to remove; "
            f"ask for {target.kind} {show(1, False)} or less (one layer removed)"
        )
    for k in range(1, top + 1):
        if met(k):
            return k
    most = f"the most {limit}" if limit else "one layer kept"
    fix = f", or raise {limit.split()[0]}" if limit else ""
    raise InfeasibleTarget(
        f"{what} cannot be met: removing {top} of {n} layers ({most}) reaches {target.kind} {show(top, True)}; "
        f"ask for that or a looser {target.kind}{fix}"
    )
