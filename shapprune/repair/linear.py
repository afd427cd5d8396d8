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

``fit="refit"`` fits more than a map of the same size: the projection itself. With ``H`` its input
(``M = H W^T + b``), the new matrix ``P = [W^T; b]`` minimises ``||[H, 1] P - (L - Y)||^2 + lam ||P - P0||^2``
(``P0``: the original projection, i.e. plain pruning; ``lam = ridge * trace(X^T X) / m``). ``M T`` is
``H (W^T T)``, so every map is one of these projections and the refit's calibration residual is never
larger; the parameters are the pruned model's, as before. A layer-0 run has no projection and keeps its
map.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from shapprune.repair.capture import SeamStats, collect, not_additive
from shapprune.repair.seams import (
    Seam,
    dropped_runs,
    embeddings_tied,
    merge_map,
    projection_matrix,
    seam_of,
    set_projection,
)
from shapprune.surgery import decoder_layers, keep_layers
from shapprune.types import TokenWindows

LOSSES = ("lstsq", "cosine")
FITS = ("map", "refit")


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
    fit: str = "map"
    tokens: int = 0
    seconds: float = 0.0
    parameters_added: int = 0
    repaired: list[RunFit] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _solve(stats: SeamStats, ridge: float, prior: torch.Tensor) -> torch.Tensor:
    """``argmin ||X P - R||^2 + lam ||P - prior||^2`` [m, d] from the sums; min-norm ``P - prior`` when singular."""
    a, b = stats.a, stats.b
    m = a.shape[0]
    eye = torch.eye(m, dtype=a.dtype, device=a.device)
    lam = ridge * float(torch.trace(a)) / m
    try:
        return torch.linalg.solve(a + lam * eye, b + lam * prior)  # [m, d]
    except RuntimeError:  # singular (too few tokens, ridge 0)
        return prior + torch.linalg.pinv(a + lam * eye, hermitian=True) @ (b - a @ prior)


def _cosine_fit(stats: SeamStats, t0: torch.Tensor, steps: int, lr: float) -> tuple[torch.Tensor, float, float]:
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
    """One run's fit (float64): a map ``t`` [d, d] on ``seam.module``'s output, or its refitted matrix ``p``.

    ``p`` is [m(+1), d] in :func:`shapprune.repair.seams.projection_matrix`'s layout (``fit="refit"``).
    """

    seam: Seam
    t: torch.Tensor | None = None
    p: torch.Tensor | None = None

    def merge(self, module: nn.Module | None = None) -> None:
        """Write the fit into ``module`` (default: the seam's own module; another model's twin works too)."""
        module = self.seam.module if module is None else module
        if self.p is not None:
            set_projection(module, self.p)
        else:
            merge_map(module, self.t)


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
    fit: str = "map",
    batch_size: int = 8,
    cosine_steps: int = 300,
    cosine_lr: float = 1e-3,
) -> tuple[list[FittedMap], list[RunFit], list[SkippedRun]]:
    """Fit the map (or, ``fit="refit"``, the projection) of every run ``(start, stop)`` on the full ``model``.

    One pass over ``windows``; ``model`` is left unchanged.
    """
    if loss not in LOSSES:
        raise ValueError(f"repair.loss: unknown loss '{loss}'; use one of {', '.join(LOSSES)}")
    if fit not in FITS:
        raise ValueError(f"repair.fit: unknown fit '{fit}'; use one of {', '.join(FITS)}")
    if fit == "refit" and loss == "cosine":
        raise ValueError("repair.loss: cosine fits a map; set repair.fit: map, or repair.loss: lstsq to refit")
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
            reason = None if start == 0 else not_additive(model, seam, first)
        if reason:
            skipped.append(SkippedRun(start, stop, reason))
        else:
            seams.append(seam)
    refit = fit == "refit"
    stats = collect(model, seams, windows, batch_size, device, loss == "cosine", refit) if seams else {}
    maps, fits = [], []
    for k, seam in enumerate(seams):
        s = stats[k]
        if isinstance(s, str):
            skipped.append(SkippedRun(seam.start, seam.stop, s))
            continue
        if refit and seam.start > 0:
            prior = projection_matrix(seam.module).to(s.a.device)  # [m(+1), d]
            p = _solve(s, ridge, prior)
            maps.append(FittedMap(seam, p=p))
            fits.append(RunFit(seam.start, seam.stop, seam.target, s.residual(p), s.residual(prior)))
            continue
        eye = torch.eye(s.a.shape[0], dtype=s.a.dtype, device=s.a.device)
        t = _solve(s, ridge, eye)  # [d, d]
        cos_start = cos_end = None
        if loss == "cosine":
            t, cos_start, cos_end = _cosine_fit(s, t, cosine_steps, cosine_lr)
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
    fit: str = "map",
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
        fit=fit,
        batch_size=batch_size,
        cosine_steps=cosine_steps,
        cosine_lr=cosine_lr,
    )
    for fitted in maps:
        fitted.merge()
    keep_layers(model, keep)
    tokens = int(np.asarray(windows).size)
    return RepairReport("linear", loss, ridge, fit, tokens, time.perf_counter() - began, 0, fits, skipped)
