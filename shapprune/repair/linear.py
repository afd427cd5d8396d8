"""Training-free linear repair of a cut (ReplaceMe-style): one d x d map per run of dropped layers.

For a run ``[i, j)`` the full model is run on calibration windows and, per token, three states are
collected: ``M``, what layer ``i-1``'s MLP output projection writes; ``Y``, the residual stream before
that MLP addition (layer ``i-1`` outputs ``Y + M``); and ``L``, the output of layer ``j-1`` (what kept
layer ``j`` would have seen). ``T`` minimises ``||M T - (L - Y)||^2 + lam ||T - I||^2``, with
``lam = ridge * trace(M^T M) / d`` (scale-free; shrinks towards ``T = I``, i.e. plain pruning). The sums
``M^T M`` and ``M^T (L - Y)`` are accumulated over batches in float64 (memory O(d^2)). ``T`` is merged
into the projection (``W' = T^T W``, ``b' = T^T b``) and the run's layers are dropped, so the repaired
model has exactly the pruned model's parameters and loads in plain transformers.

``loss="cosine"`` (ReplaceMe's cosine variant) starts from the least-squares ``T`` and takes Adam steps
on the mean ``1 - cos(Y + M T, L)``; it keeps ``M``, ``Y``, ``L`` of every calibration token in float32
on the device (memory O(N d) per run) and does not use ``ridge``.

A run starting at layer 0 uses ``M = `` the input of layer 0 (the scaled token embedding) and ``Y = 0``;
its map is folded into the input embedding when that is untied from the LM head and layer 0's input
really is a scaled embedding lookup (checked on the first window); otherwise the run is skipped and
reported. Every run is fitted on the *full* model's states (one pass over the windows for all runs).
Before fitting, each seam is checked to be additive (doubling ``M`` moves layer ``i-1``'s output by
exactly ``M``); a seam that is not (e.g. a norm after the MLP) is skipped and reported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from shapprune.repair.seams import Seam, dropped_runs, embeddings_tied, merge_map, seam_of
from shapprune.surgery import decoder_layers, keep_layers
from shapprune.types import TokenWindows

LOSSES = ("lstsq", "cosine")


@dataclass(frozen=True)
class RunFit:
    """The fitted map of one run; residuals are ``||M T - R||^2 / ||R||^2`` on the calibration tokens."""

    start: int
    stop: int
    target: str
    residual: float  # with the fitted T
    baseline: float  # with T = I (plain pruning)
    cosine: float | None = None  # mean 1 - cos(Y + M T, L) after the cosine fit (loss="cosine" only)
    cosine_start: float | None = None  # the same at the least-squares start


@dataclass(frozen=True)
class SkippedRun:
    """A run left unrepaired (its layers are still dropped) and why."""

    start: int
    stop: int
    reason: str


@dataclass
class RepairReport:
    """What a repair did: runs repaired and skipped, calibration tokens, wall time, parameters added."""

    method: str
    loss: str
    ridge: float
    tokens: int = 0
    seconds: float = 0.0
    parameters_added: int = 0
    repaired: list[RunFit] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _Stop(Exception):
    """Raised by a hook once every state a pass needs is captured (skips the rest of the model)."""


def _hidden(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[index]


def _layer_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


@dataclass
class _Stats:
    """Running sums for one seam: ``M^T M``, ``M^T R`` [d, d] (float64), ``||R||^2`` and optional token states."""

    a: torch.Tensor
    b: torch.Tensor
    rr: float = 0.0
    states: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (M, Y, L)

    def residual(self, t: torch.Tensor) -> float:
        """``||M t - R||^2 / ||R||^2`` from the sums alone."""
        err = torch.trace(t.T @ self.a @ t) - 2 * torch.trace(t.T @ self.b) + self.rr
        return float(err.clamp_min(0) / max(self.rr, 1e-300))


class _Capture:
    """Forward hooks that record ``M``, the output of layer ``i-1`` and ``L`` of every seam in one pass."""

    def __init__(self, model: nn.Module, seams: list[Seam]) -> None:
        self.layers = decoder_layers(model)
        self.seams = seams
        self.out: dict[tuple[str, int], torch.Tensor] = {}
        self.last = max(s.stop - 1 for s in seams)
        self.handles: list = []

    def __enter__(self) -> _Capture:
        for k, seam in enumerate(self.seams):
            if seam.start == 0:
                self.handles.append(self.layers[0].register_forward_pre_hook(self._pre(("M", k)), with_kwargs=True))
            else:
                self.handles.append(seam.module.register_forward_hook(self._post(("M", k))))
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

    def _stop(self, module: nn.Module, args: tuple, output: object) -> None:
        raise _Stop

    def run(self, model: nn.Module, ids: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
        self.out = {}
        try:
            model(input_ids=ids, use_cache=False)
        except _Stop:
            pass
        return self.out


def _forward_until(model: nn.Module, ids: torch.Tensor, layer: nn.Module, hooks: list) -> torch.Tensor:
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


def _not_additive(model: nn.Module, seam: Seam, ids: torch.Tensor) -> str | None:
    """Why layer ``start-1``'s output is not ``Y + M`` (doubling ``M`` must add exactly ``M``), or None."""
    layer = decoder_layers(model)[seam.start - 1]
    seen: list[torch.Tensor] = []

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen.append(output.detach().clone())

    def double(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * 2

    out = _forward_until(model, ids, layer, [(seam.module, record)])  # [1, T, d]
    doubled = _forward_until(model, ids, layer, [(seam.module, double)])
    m = seen[0].double().reshape(out.shape)  # [1, T, d] (OPT's MLP runs on flattened tokens)
    err = float((doubled.double() - out.double() - m).norm())
    eps = torch.finfo(out.dtype).eps
    if err <= 0.05 * float(m.norm()) + 8 * eps * float(out.double().norm()):
        return None
    return (
        f"layer {seam.start - 1}'s output is not its residual plus {seam.target}'s output "
        "(a norm or gate after the MLP?); a linear map cannot be merged there"
    )


def _not_embedding(model: nn.Module, ids: torch.Tensor, states: torch.Tensor) -> str | None:
    """Why layer 0's input ``states [b, T, d]`` is not ``c * embed(ids)`` for one scalar ``c``, or None."""
    e = model.get_input_embeddings()(ids).double()  # [b, T, d]
    x = states.double()
    c = float((x * e).sum() / (e * e).sum().clamp_min(1e-300))
    if float((x - c * e).norm()) <= 1e-3 * float(x.norm()) + 1e-12:
        return None
    return "layer 0's input is not a scaled token embedding (positional embeddings?); cannot fold the map into it"


def _solve(stats: _Stats, ridge: float) -> torch.Tensor:
    """``argmin ||M T - R||^2 + lam ||T - I||^2`` from the sums; min-norm ``T - I`` when singular."""
    a, b = stats.a, stats.b
    d = a.shape[0]
    eye = torch.eye(d, dtype=a.dtype, device=a.device)
    lam = ridge * float(torch.trace(a)) / d
    try:
        return torch.linalg.solve(a + lam * eye, b + lam * eye)  # [d, d]
    except RuntimeError:  # singular (too few tokens, ridge 0)
        return eye + torch.linalg.pinv(a + lam * eye, hermitian=True) @ (b - a)


def _cosine_fit(stats: _Stats, t0: torch.Tensor, steps: int, lr: float) -> tuple[torch.Tensor, float, float]:
    """Adam on mean ``1 - cos(Y + M T, L)`` from ``t0``; returns ``(T, loss at start, loss at end)``."""
    m = torch.cat([s[0] for s in stats.states])  # [N, d]
    y = torch.cat([s[1] for s in stats.states])  # [N, d]
    target = torch.cat([s[2] for s in stats.states])  # [N, d]
    t = nn.Parameter(t0.to(m.dtype).clone())
    opt = torch.optim.Adam([t], lr=lr)

    def loss_of() -> torch.Tensor:
        return 1 - torch.nn.functional.cosine_similarity(y + m @ t, target, dim=-1).mean()

    with torch.enable_grad():
        start = float(loss_of().detach())
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_of()
            loss.backward()
            opt.step()
    with torch.no_grad():
        end = float(loss_of())
    return t.detach().double(), start, end


@dataclass(frozen=True)
class FittedMap:
    """The map ``t`` [d, d] (float64) of one run, to be merged into ``seam.module``."""

    seam: Seam
    t: torch.Tensor


def _windows(windows: TokenWindows) -> torch.Tensor:
    ids = torch.as_tensor(np.asarray(windows), dtype=torch.long)  # [n, T]
    if ids.ndim != 2 or not ids.numel():
        raise ValueError(f"repair: calibration windows must be a non-empty int64 [n, T] array, got {tuple(ids.shape)}")
    return ids


@torch.no_grad()
def fit_maps(
    model: nn.Module,
    runs: Sequence[tuple[int, int]],
    windows: TokenWindows,
    *,
    ridge: float = 1e-4,
    loss: str = "lstsq",
    batch_size: int = 8,
    cosine_steps: int = 300,
    cosine_lr: float = 1e-3,
) -> tuple[list[FittedMap], list[RunFit], list[SkippedRun]]:
    """Fit the map of every run ``(start, stop)`` on the full ``model`` (left unchanged) in one pass."""
    if loss not in LOSSES:
        raise ValueError(f"repair.loss: unknown loss '{loss}'; use one of {', '.join(LOSSES)}")
    device = next(model.parameters()).device
    windows = _windows(windows)
    seams: list[Seam] = []
    skipped: list[SkippedRun] = []
    first = windows[:1].to(device)  # [1, T]
    for start, stop in runs:
        seam = seam_of(model, start, stop)
        if start == 0 and embeddings_tied(model):
            reason = "run starts at layer 0 and the input embedding is tied to the LM head; left unrepaired"
        else:
            reason = None if start == 0 else _not_additive(model, seam, first)
        if reason:
            skipped.append(SkippedRun(start, stop, reason))
        else:
            seams.append(seam)
    stats = _collect(model, seams, windows, batch_size, device, keep_states=loss == "cosine") if seams else {}
    maps, fits = [], []
    for k, seam in enumerate(seams):
        s = stats[k]
        if isinstance(s, str):
            skipped.append(SkippedRun(seam.start, seam.stop, s))
            continue
        t = _solve(s, ridge)  # [d, d]
        cos_start = cos_end = None
        if loss == "cosine":
            t, cos_start, cos_end = _cosine_fit(s, t, cosine_steps, cosine_lr)
        eye = torch.eye(t.shape[0], dtype=t.dtype, device=t.device)
        maps.append(FittedMap(seam, t))
        fits.append(RunFit(seam.start, seam.stop, seam.target, s.residual(t), s.residual(eye), cos_end, cos_start))
    return maps, fits, sorted(skipped, key=lambda r: r.start)


def linear_repair(
    model: nn.Module,
    keep: Sequence[bool] | np.ndarray,
    windows: TokenWindows,
    *,
    ridge: float = 1e-4,
    loss: str = "lstsq",
    batch_size: int = 8,
    cosine_steps: int = 300,
    cosine_lr: float = 1e-3,
    device: str | torch.device | None = None,
) -> RepairReport:
    """Fit one linear map per run of dropped layers on ``windows`` (int64 [n, T]), merge it, drop the layers.

    Modifies ``model`` in place (moved to ``device`` when given) and returns the report.
    """
    began = time.perf_counter()
    if device is not None:
        model.to(device)
    keep = np.asarray(keep, dtype=bool)  # bool[L]
    if keep.shape != (len(decoder_layers(model)),) or not keep.any():
        raise ValueError(f"repair: mask of shape {keep.shape} must have one entry per layer and keep at least one")
    maps, fits, skipped = fit_maps(
        model,
        dropped_runs(keep),
        windows,
        ridge=ridge,
        loss=loss,
        batch_size=batch_size,
        cosine_steps=cosine_steps,
        cosine_lr=cosine_lr,
    )
    for fitted in maps:
        merge_map(fitted.seam.module, fitted.t)
    keep_layers(model, keep)
    tokens = int(np.asarray(windows).size)
    return RepairReport("linear", loss, ridge, tokens, time.perf_counter() - began, 0, fits, skipped)


def _collect(
    model: nn.Module,
    seams: list[Seam],
    windows: torch.Tensor,
    batch_size: int,
    device: torch.device,
    keep_states: bool,
) -> dict[int, _Stats | str]:
    """One pass of the full model over ``windows``: the sums of every seam (or why a layer-0 seam is skipped)."""
    out: dict[int, _Stats | str] = {}
    with _Capture(model, seams) as capture:
        for begin in range(0, len(windows), batch_size):
            ids = windows[begin : begin + batch_size].to(device)  # [b, T]
            got = capture.run(model, ids)
            for k, seam in enumerate(seams):
                if isinstance(out.get(k), str):
                    continue
                m = got[("M", k)]  # [b, T, d]
                if seam.start == 0 and begin == 0:
                    reason = _not_embedding(model, ids, m)
                    if reason:
                        out[k] = reason
                        continue
                d = m.shape[-1]
                m64 = m.reshape(-1, d).double()  # [N, d]
                target = got[("L", k)].reshape(-1, d).double()  # [N, d]
                y = got[("O", k)].reshape(-1, d).double() - m64 if seam.start > 0 else torch.zeros_like(m64)
                r = target - y  # [N, d]
                s = out.setdefault(k, _Stats(m64.new_zeros(d, d), m64.new_zeros(d, d)))
                assert isinstance(s, _Stats)
                s.a += m64.T @ m64
                s.b += m64.T @ r
                s.rr += float((r * r).sum())
                if keep_states:
                    s.states.append((m64.float(), y.float(), target.float()))
    return out
