"""The repaired layer game: the value of a mask is the model's quality after linearly repairing its cut.

For each mask, every run of dropped layers gets its fit (a map or, ``fit="refit"``, a refitted projection,
with ``loss`` least squares or cosine; fitted on ``fit_windows`` on the full model, see
:mod:`shapprune.repair.linear`). The fits run on ``fit_model`` when given (the repair stage's fp32 copy of the
full model, so a mask is scored after the fit the repair stage would merge) and are merged into ``model``'s
twin modules; else on ``model`` itself;
the fits are merged into the touched weights (copies of those alone are kept), the mask is scored on
separate ``score_windows`` and the weights are put back, so the model is left exactly as it was. Fits
depend only on the run, not on the rest of the mask, so each distinct run is fitted once (all runs new
to a call in one pass over the fit windows) and cached.

With ``prefix_reuse`` a mask's forward starts where its states are the full model's or an earlier mask's
(:mod:`shapprune.prefix`): a fit rewrites the projection of the layer before its run, so the states entering
layer ``j`` are shared when the kept layers before ``j`` and the fits merged into them are; the full model's
states serve every mask up to the layer before its first repaired run. Values are bit-identical either way.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from shapprune.prefix import PrefixScorer, full_and_scorer, nlls_by_row
from shapprune.repair.linear import FittedMap, RunFit, SkippedRun, fit_maps
from shapprune.repair.seams import dropped_runs
from shapprune.scoring import NLL, masked_nll, utility_from_nll
from shapprune.surgery import num_layers
from shapprune.types import Mask, TokenWindows, Utility


@contextmanager
def merged(maps: list[FittedMap]):
    """Temporarily merge ``maps`` into their modules; the touched weights (and biases) are restored after."""
    saved = []
    for fitted in maps:
        module = fitted.seam.module
        tensors = [t for t in (module.weight, getattr(module, "bias", None)) if t is not None]
        saved.append([(t, t.detach().clone()) for t in tensors])
    try:
        for fitted in maps:
            fitted.merge()
        yield
    finally:
        with torch.no_grad():
            for pairs in saved:
                for tensor, copy in pairs:
                    tensor.copy_(copy)


@dataclass
class RepairedLayerGame:
    """Players are decoder layers; ``value(masks bool[n, L]) -> float[n]`` after a linear repair per mask."""

    model: nn.Module
    fit_windows: TokenWindows
    score_windows: TokenWindows
    utility: str = "ppl_ratio"
    ridge: float = 1e-4
    fit: str = "map"
    loss: str = "lstsq"  # repair.loss: lstsq | cosine (a map only)
    fit_model: nn.Module | None = None  # the full model the fits run on (its dtype); None: ``model`` itself
    batch_size: int = 16
    prefix_reuse: bool = False  # start each forward from shared states (the full model's or an earlier mask's)
    cache_mib: float = 512.0
    calls: int = 0
    fit_passes: int = 0  # passes over the fit windows (one per call that met new runs)
    fit_layer_tokens: int = 0  # their cost: fit tokens x layers run (each pass stops after the deepest run's end)
    full: NLL = field(init=False)
    scorer: PrefixScorer | None = field(init=False, default=None)
    fits: dict[tuple[int, int], FittedMap | SkippedRun] = field(init=False, default_factory=dict)
    reports: dict[tuple[int, int], RunFit] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.n_players = num_layers(self.model)
        self.full, self.scorer = full_and_scorer(  # pinned states: a mask starts at the layer before its first fit
            self.model, self.score_windows, self.batch_size, self.cache_mib, self.prefix_reuse
        )

    def _fit(self, runs: set[tuple[int, int]]) -> None:
        new = sorted(runs - self.fits.keys())
        if not new:
            return
        source = self.model if self.fit_model is None else self.fit_model
        maps, fits, skipped = fit_maps(
            source, new, self.fit_windows, ridge=self.ridge, loss=self.loss, fit=self.fit, batch_size=self.batch_size
        )
        if source is not self.model:  # merged into the evaluated model's own module at each seam
            maps = [replace(m, seam=replace(m.seam, module=self.model.get_submodule(m.seam.target))) for m in maps]
        self.fits.update({(m.seam.start, m.seam.stop): m for m in maps})
        if maps:
            self.fit_passes += 1
            self.fit_layer_tokens += int(np.asarray(self.fit_windows).size) * max(m.seam.stop for m in maps)
        self.fits.update({(s.start, s.stop): s for s in skipped})
        self.reports.update({(f.start, f.stop): f for f in fits})

    def _maps(self, mask: np.ndarray) -> list[FittedMap]:
        return [f for f in (self.fits[r] for r in dropped_runs(mask)) if isinstance(f, FittedMap)]

    def signature(self, mask: np.ndarray) -> np.ndarray:
        """int[L]: 0 dropped, 1 kept as is, ``2 + stop`` kept with the fit of the run ``[i + 1, stop)`` merged.

        A fitted layer-0 run (folded into the embedding) changes every layer's input; no state is cached
        before its end, so its layers' zeros keep it apart. Every run of ``mask`` must be fitted.
        """
        sig = np.asarray(mask, dtype=np.int64).copy()
        for fitted in self._maps(mask):
            if fitted.seam.start > 0:
                sig[fitted.seam.start - 1] = 2 + fitted.seam.stop
        return sig

    def nll(self, mask: np.ndarray) -> NLL:
        """NLL of one mask after repairing its runs (counts as one LLM evaluation)."""
        self.calls += 1
        self._fit(set(dropped_runs(mask)))
        with merged(self._maps(mask)):
            if self.scorer is not None:
                return self.scorer.score(mask, self.signature(mask))
            return masked_nll(self.model, self.score_windows, mask, self.batch_size)

    def __call__(self, masks: Mask) -> Utility:
        masks = np.asarray(masks, dtype=bool)  # [n, L]
        self._fit({r for mask in masks for r in dropped_runs(mask)})  # every new run in one pass
        nlls = nlls_by_row(masks, self.nll, trie=self.scorer is not None)
        return np.array([utility_from_nll(n, self.full, self.utility) for n in nlls])
