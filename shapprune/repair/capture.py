"""What linear repair measures on the full model: per seam, the sums of ``X^T X`` and ``X^T R`` in one pass.

Forward hooks record, for every run ``[i, j)`` of dropped layers, ``M`` (what layer ``i-1``'s MLP output
projection writes, or layer 0's input), the projection's input ``H`` (``fit="refit"`` only), layer
``i-1``'s output ``Y + M`` and ``L`` (layer ``j-1``'s output), and a hook after the deepest needed layer
stops the forward. ``X`` is ``M`` for a map, ``H`` (with a column of ones when the projection has a bias)
for a refitted projection; ``R = L - Y`` either way. Also the two checks that decide
whether a seam can take a merged map: additivity of the seam and, at layer 0, a scaled embedding input.
See :mod:`shapprune.repair.linear` for the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from shapprune.repair.seams import Seam
from shapprune.surgery import decoder_layers


class _Stop(Exception):
    """Raised by a hook once every state a pass needs is captured (skips the rest of the model)."""


def _hidden(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[index]


def _layer_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


@dataclass
class SeamStats:
    """Running sums for one seam: ``X^T X`` [m, m], ``X^T R`` [m, d] (float64), ``||R||^2``, optional states.

    ``X`` is ``M`` (``m = d``) for a map, the projection's input for a refit (see the module docstring).
    """

    a: torch.Tensor
    b: torch.Tensor
    rr: float = 0.0
    states: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (M, Y, L)

    def residual(self, t: torch.Tensor) -> float:
        """``||X t - R||^2 / ||R||^2`` from the sums alone (``t``: [m, d])."""
        err = torch.trace(t.T @ self.a @ t) - 2 * torch.trace(t.T @ self.b) + self.rr
        return float(err.clamp_min(0) / max(self.rr, 1e-300))


class Capture:
    """Forward hooks that record ``M`` (and ``H``), the output of layer ``i-1`` and ``L`` of every seam in one pass."""

    def __init__(self, model: nn.Module, seams: list[Seam], inputs: bool = False) -> None:
        self.layers = decoder_layers(model)
        self.seams = seams
        self.inputs = inputs
        self.out: dict[tuple[str, int], torch.Tensor] = {}
        self.last = max(s.stop - 1 for s in seams)
        self.handles: list = []

    def __enter__(self) -> Capture:
        for k, seam in enumerate(self.seams):
            if seam.start == 0:
                self.handles.append(self.layers[0].register_forward_pre_hook(self._pre(("M", k)), with_kwargs=True))
            else:
                self.handles.append(seam.module.register_forward_hook(self._post(("M", k))))
                if self.inputs:
                    self.handles.append(seam.module.register_forward_hook(self._input(("H", k))))
                self.handles.append(self.layers[seam.start - 1].register_forward_hook(self._post(("O", k))))
            self.handles.append(self.layers[seam.stop - 1].register_forward_hook(self._post(("L", k))))
        self.handles.append(self.layers[self.last].register_forward_hook(self._stop))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()

    def _pre(self, key: tuple[str, int]):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            self.out[key] = _layer_input(args, kwargs).detach().clone()

        return hook

    def _post(self, key: tuple[str, int]):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if key in self.out:
                raise ValueError(f"{key[0]} of run {self.seams[key[1]].start} is written twice in one forward")
            self.out[key] = _hidden(output).detach().clone()  # clone: some MLPs are added to in place

        return hook

    def _input(self, key: tuple[str, int]):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            self.out[key] = args[0].detach().clone()

        return hook

    def _stop(self, module: nn.Module, args: tuple, output: object) -> None:
        raise _Stop

    def run(self, model: nn.Module, ids: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
        self.out = {}
        try:
            model(input_ids=ids, use_cache=False)
        except _Stop:
            pass
        return self.out


def forward_until(model: nn.Module, ids: torch.Tensor, layer: nn.Module, hooks: list) -> torch.Tensor:
    """Output of ``layer`` for ``ids``, with extra ``(module, hook)`` forward hooks; stops after ``layer``."""
    got: list[torch.Tensor] = []

    def stop(module: nn.Module, args: tuple, output: object) -> None:
        got.append(_hidden(output).detach().clone())
        raise _Stop

    handles = [m.register_forward_hook(h) for m, h in hooks] + [layer.register_forward_hook(stop)]
    try:
        model(input_ids=ids, use_cache=False)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return got[0]


def not_additive(model: nn.Module, seam: Seam, ids: torch.Tensor) -> str | None:
    """Why layer ``start-1``'s output is not ``Y + M`` (doubling ``M`` must add exactly ``M``), or None."""
    layer = decoder_layers(model)[seam.start - 1]
    seen: list[torch.Tensor] = []

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen.append(output.detach().clone())

    def double(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * 2

    out = forward_until(model, ids, layer, [(seam.module, record)])  # [1, T, d]
    doubled = forward_until(model, ids, layer, [(seam.module, double)])
    m = seen[0].double().reshape(out.shape)  # [1, T, d] (OPT's MLP runs on flattened tokens)
    err = float((doubled.double() - out.double() - m).norm())
    eps = torch.finfo(out.dtype).eps
    if err <= 0.05 * float(m.norm()) + 8 * eps * float(out.double().norm()):
        return None
    return (
        f"layer {seam.start - 1}'s output is not its residual plus {seam.target}'s output "
        "(a norm or gate after the MLP?); a linear map cannot be merged there"
    )


def not_embedding(model: nn.Module, ids: torch.Tensor, states: torch.Tensor) -> str | None:
    """Why layer 0's input ``states [b, T, d]`` is not ``c * embed(ids)`` for one scalar ``c``, or None."""
    e = model.get_input_embeddings()(ids).double()  # [b, T, d]
    x = states.double()
    c = float((x * e).sum() / (e * e).sum().clamp_min(1e-300))
    if float((x - c * e).norm()) <= 1e-3 * float(x.norm()) + 1e-12:
        return None
    return "layer 0's input is not a scaled token embedding (positional embeddings?); cannot fold the map into it"


def projection_input(module: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``[N, m]`` float64 input rows of a projection, with a column of ones appended when it has a bias."""
    x = h.reshape(-1, h.shape[-1]).double()  # [N, m]
    if getattr(module, "bias", None) is not None:
        x = torch.cat([x, x.new_ones(len(x), 1)], dim=1)  # [N, m + 1]
    return x


def collect(
    model: nn.Module,
    seams: list[Seam],
    windows: torch.Tensor,
    batch_size: int,
    device: torch.device,
    keep_states: bool,
    refit: bool = False,
) -> dict[int, SeamStats | str]:
    """One pass of the full model over ``windows``: the sums of every seam (or why a layer-0 seam is skipped).

    With ``refit`` the sums of a seam after layer 0 are over the projection's inputs (``X = H``); a layer-0
    seam has no projection to refit and keeps ``X = M`` (its map is folded into the embedding).
    """
    out: dict[int, SeamStats | str] = {}
    with Capture(model, seams, inputs=refit) as capture:
        for begin in range(0, len(windows), batch_size):
            ids = windows[begin : begin + batch_size].to(device)  # [b, T]
            got = capture.run(model, ids)
            grams: dict[int, torch.Tensor] = {}  # X^T X depends on the run's start only: once per start and batch
            for k, seam in enumerate(seams):
                if isinstance(out.get(k), str):
                    continue
                m = got[("M", k)]  # [b, T, d]
                if seam.start == 0 and begin == 0:
                    reason = not_embedding(model, ids, m)
                    if reason:
                        out[k] = reason
                        continue
                d = m.shape[-1]
                m64 = m.reshape(-1, d).double()  # [N, d]
                target = got[("L", k)].reshape(-1, d).double()  # [N, d]
                y = got[("O", k)].reshape(-1, d).double() - m64 if seam.start > 0 else torch.zeros_like(m64)
                r = target - y  # [N, d]
                x = projection_input(seam.module, got[("H", k)]) if refit and seam.start > 0 else m64  # [N, m]
                s = out.setdefault(k, SeamStats(x.new_zeros(x.shape[1], x.shape[1]), x.new_zeros(x.shape[1], d)))
                assert isinstance(s, SeamStats)
                if seam.start not in grams:
                    grams[seam.start] = x.T @ x  # [m, m]
                s.a += grams[seam.start]
                s.b += x.T @ r
                s.rr += float((r * r).sum())
                if keep_states:
                    s.states.append((m64.float(), y.float(), target.float()))
    return out
