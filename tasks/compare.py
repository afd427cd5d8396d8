"""The ``compare`` stage's work: the evaluation of every method's dropped sets, and the table of results.

The stage's Prefect tasks (:func:`score_method`, :func:`evaluate_variants`, :func:`evaluate_repaired_variants`)
wrap :func:`evaluate_sets` (and :func:`tasks.compare_sets.method_sets`); ``bench/gpu.py`` calls the plain
functions directly, on a machine without the orchestration stack too (Prefect is then not imported). Which sets
each method drops, and at what cost, is :mod:`tasks.compare_sets`; the markdown and the figures made from
the table are in :mod:`tasks.compare_report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from shapprune.checkpoint import PartStore
from shapprune.config import Params
from shapprune.evaluation import paired as pairing
from shapprune.evaluation import variants
from shapprune.evaluation.zero_shot import MCItem
from shapprune.models import load_model, parameter_count
from shapprune.repair.game import merged
from shapprune.repair.linear import FittedMap, fit_maps
from shapprune.repair.seams import Seam, dropped_runs
from shapprune.surgery import decoder_layers, num_layers
from tasks.compare_sets import MethodSets, method_sets
from tasks.shared.artifacts import read_repair_windows, read_windows
from tasks.shared.paths import Paths
from tasks.shared.progress import StepProgress

try:  # bench/gpu.py imports this module on a bare GPU machine: there the tasks below are plain functions
    from prefect import task
    from prefect.cache_policies import NO_CACHE
except ImportError:
    NO_CACHE = None

    def task(**_: object):  # type: ignore[no-redef]
        return lambda fn: fn


def evaluate_sets(
    params: Params,
    paths: Paths,
    model,
    tokenizer,
    sets: Sequence[list[int]],
    items: Mapping[str, Sequence[MCItem]],
    store: PartStore,
) -> int:
    """Held-out PPL (all sets in one prefix-reuse pass), tokens/s and zero-shot accuracy of every dropped set.

    Results go to ``store`` (``ppl-<key>``, ``zs-<key>``); sets already there are skipped. Returns how many
    parts were computed.
    """
    cfg, n_layers = params.compare, num_layers(model)
    corpora = _corpora(params, paths)
    todo = [s for s in sets if store.get(f"ppl-{set_key(s)}") is None]
    if todo:
        masks = np.stack([variants.keep_mask(n_layers, s) for s in todo])  # [n, L]
        bar = StepProgress("compare-ppl", "perplexity of every variant", len(todo) * len(corpora), 0, "masks")
        offset = {name: i * len(todo) for i, name in enumerate(corpora)}

        def step(name: str, done: int) -> None:
            if done % 4 == 0 or done == len(todo):
                bar.step(offset[name] + done, name)

        ppls = variants.variant_perplexities(
            model, corpora, masks, cfg.batch_size, cfg.cache_mib, step, per_window=True
        )
        speed_windows = next(iter(corpora.values()))[:8]
        for s, mask, ppl in zip(todo, masks, ppls):
            speed = variants.tokens_per_second(model, speed_windows, mask)
            store.put(f"ppl-{set_key(s)}", ppl | {"tokens_per_s": speed})
    missing = [s for s in sets if store.get(f"zs-{set_key(s)}") is None]
    done = len(sets) - len(missing)
    bar = StepProgress("compare-zero-shot", "zero-shot accuracy of every variant", len(sets), done, "variants")
    for i, s in enumerate(missing, start=done + 1):
        keep = variants.keep_mask(n_layers, s)
        zs = variants.variant_zero_shot(model, tokenizer, keep, items, cfg.batch_size, per_item=True)
        store.put(f"zs-{set_key(s)}", zs)
        bar.step(i, set_key(s))
    return len(todo) + len(missing)


def _corpora(params: Params, paths: Paths) -> dict[str, np.ndarray]:
    cut = params.compare.eval_windows
    return {r: read_windows(paths.eval_windows(r))[:cut] for r in params.prepare_data.eval_corpora}


def linear_maps(params: Params, paths: Paths, model, sets: Sequence[list[int]]) -> dict[tuple[int, int], FittedMap]:
    """The repair stage's linear map of every run of dropped layers in ``sets``, ready to merge into ``model``.

    Fitted as ``repair`` fits them (fp32 copy of the full model, ``repair.*`` options, the repair windows), so a
    set's repaired row is the model ``repair`` would save for it; runs that cannot be repaired are left out.
    """
    n_layers, cfg = num_layers(model), params.repair
    runs = sorted({r for s in sets for r in dropped_runs(variants.keep_mask(n_layers, s))})
    if not runs:
        return {}
    windows = read_repair_windows(paths.repair_windows, "linear in compare.repairs", "compare.repairs: [none]")[0]
    windows = windows[: cfg.linear_windows]  # [n, T]
    device = next(model.parameters()).device
    full32, _ = load_model(str(paths.model), dtype=torch.float32, device=str(device))
    maps, _, skipped = fit_maps(full32, runs, windows, ridge=cfg.ridge, loss=cfg.loss, fit=cfg.fit)
    for s in skipped:
        print(f"compare: run {s.start}-{s.stop - 1} left unrepaired ({s.reason})")
    out = {}
    for m in maps:  # the same seam in the evaluated model
        seam = Seam(m.seam.start, m.seam.stop, m.seam.target, model.get_submodule(m.seam.target))
        out[(seam.start, seam.stop)] = replace(m, seam=seam)
    return out


def evaluate_repaired_sets(
    params: Params,
    paths: Paths,
    model,
    tokenizer,
    sets: Sequence[list[int]],
    items: Mapping[str, Sequence[MCItem]],
    store: PartStore,
) -> int:
    """The same measurements as :func:`evaluate_sets` after the linear repair of each set (``*-linear-<key>``).

    One set at a time: its maps are merged into the touched weights and taken out again afterwards (the
    merged weights change the states a prefix cache would share between sets). Returns parts computed.
    """
    cfg, n_layers = params.compare, num_layers(model)
    todo = [s for s in sets if s and store.get(f"zs-linear-{set_key(s)}") is None]
    if not todo:
        return 0
    maps = linear_maps(params, paths, model, todo)
    corpora = _corpora(params, paths)
    speed_windows = next(iter(corpora.values()))[:8]
    bar = StepProgress("compare-linear", "linearly repaired variants evaluated", len(todo), 0, "variants")
    for i, s in enumerate(todo, start=1):
        keep = variants.keep_mask(n_layers, s)
        with merged([maps[r] for r in dropped_runs(keep) if r in maps]):
            if store.get(f"ppl-linear-{set_key(s)}") is None:
                ppl = variants.variant_perplexities(model, corpora, keep[None], cfg.batch_size, 0.0, per_window=True)[0]
                speed = variants.tokens_per_second(model, speed_windows, keep)
                store.put(f"ppl-linear-{set_key(s)}", ppl | {"tokens_per_s": speed})
            zs = variants.variant_zero_shot(model, tokenizer, keep, items, cfg.batch_size, per_item=True)
        store.put(f"zs-linear-{set_key(s)}", zs)
        bar.step(i, set_key(s))
    return len(todo)


def set_key(dropped: list[int]) -> str:
    """Part name of a dropped set: ``"13-14-17"``; ``"full"`` for the unpruned model."""
    return "-".join(map(str, dropped)) or "full"


def distinct_sets(methods: list[MethodSets]) -> list[list[int]]:
    """The full model (``[]``) and every dropped set of every method, each once (methods often agree)."""
    return [[], *{set_key(s): s for m in methods for s in m.sets.values()}.values()]


def rows(methods: list[MethodSets], store: PartStore, model, repairs: Sequence[str] = ("none",)) -> pd.DataFrame:
    """One row per (method, k, repair) plus the full model: dropped layers, every metric in the store, and costs."""
    layer_params = [sum(p.numel() for p in layer.parameters()) for layer in decoder_layers(model)]
    total_params, n_layers = parameter_count(model), len(layer_params)
    out = [{"method": "full", "repair": "none", "n_drop": 0, "ratio": 0.0, "dropped": "-", "params_kept": 1.0}]
    out[0] |= _metrics(store, [], "none")
    for repair in repairs:
        for m in methods:
            for k, dropped in sorted(m.sets.items()):
                kept = 1.0 - sum(layer_params[i] for i in dropped) / total_params  # a linear repair adds none
                out.append(
                    {"method": m.method, "repair": repair, "n_drop": k, "ratio": round(k / n_layers, 4)}
                    | {"dropped": " ".join(map(str, dropped)), "params_kept": kept}
                    | {"scoring_s": m.seconds, "llm_evaluations": m.llm_evaluations.get(k)}
                    | {"llm_layer_forwards": m.layer_forwards.get(k)}
                    | _metrics(store, dropped, repair)
                )
    return pd.DataFrame(out)


def _parts(store: PartStore, dropped: list[int], repair: str = "none") -> dict:
    key = set_key(dropped) if repair == "none" else f"{repair}-{set_key(dropped)}"
    return (store.get(f"ppl-{key}") or {}) | (store.get(f"zs-{key}") or {})


def _metrics(store: PartStore, dropped: list[int], repair: str = "none") -> dict:
    """The scalar metrics of a set (the per-window and per-item lists stay in the store, for :func:`paired`)."""
    return {k: v for k, v in _parts(store, dropped, repair).items() if not isinstance(v, list)}


PAIRED_COLUMNS = ["repair", "n_drop", "method", "metric", "best", "same_set", "estimate", "low", "high", "real"]


def paired(
    table: pd.DataFrame,
    store: PartStore,
    corpora: Sequence[str],
    tokens_per_window: int,
    n_boot: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Every method against the best one at its k and repair, paired over the same windows and items.

    Per metric (``ppl_<corpus>``, lowest is best; ``mean_acc``, highest is best) one row per other method:
    the ratio of its perplexity to the best's (or its accuracy minus the best's), the bootstrap interval
    (``n_boot`` resamples of windows, or of items within each task) and whether the interval excludes no
    difference. A method that drops the best's very set is marked ``same_set`` (no difference by identity).
    """
    out = []
    cells = table[table.method != "full"]
    for (repair, k), group in cells.groupby(["repair", "n_drop"], sort=True):
        parts = {r.method: _parts(store, _layers(r.dropped), repair) for r in group.itertuples()}
        for metric in [f"ppl_{c}" for c in corpora] + ["mean_acc"]:
            if metric not in group or group[metric].isna().all():
                continue
            best = group.loc[group[metric].idxmin() if metric != "mean_acc" else group[metric].idxmax()]
            for r in group.itertuples():
                if r.method == best.method:
                    continue
                a, b = parts[r.method], parts[best.method]
                if metric == "mean_acc":
                    hits = {t.removeprefix("hits_"): v for t, v in a.items() if t.startswith("hits_")}
                    if not hits:
                        continue
                    best_hits = {t: b[f"hits_{t}"] for t in hits}
                    diff = pairing.accuracy_difference(hits, best_hits, n_boot, rng)
                else:
                    name = f"window_nll_{metric.removeprefix('ppl_')}"
                    if name not in a or name not in b:
                        continue
                    diff = pairing.ppl_ratio(a[name], b[name], tokens_per_window, n_boot, rng)
                out.append(
                    {"repair": repair, "n_drop": int(k), "method": r.method, "metric": metric, "best": best.method}
                    | {"same_set": r.dropped == best.dropped, "estimate": diff.estimate, "low": diff.low}
                    | {"high": diff.high, "real": diff.real}
                )  # fmt: skip
    return pd.DataFrame(out, columns=PAIRED_COLUMNS)


def _layers(dropped: str) -> list[int]:
    return [int(x) for x in str(dropped).split()] if dropped != "-" else []


@task(name="score-method", cache_policy=NO_CACHE)
def score_method(params: Params, paths: Paths, method: str, model, ks: list[int], store: PartStore) -> MethodSets:
    """The sets ``method`` drops for every k in ``ks`` (:func:`tasks.compare_sets.method_sets`)."""
    return method_sets(params, paths, method, model, ks, store)


@task(name="evaluate-variants", cache_policy=NO_CACHE)
def evaluate_variants(
    params: Params,
    paths: Paths,
    model,
    tokenizer,
    sets: Sequence[list[int]],
    items: Mapping[str, Sequence[MCItem]],
    store: PartStore,
) -> int:
    """:func:`evaluate_sets` as the stage's task: every dropped set measured; returns parts computed."""
    return evaluate_sets(params, paths, model, tokenizer, sets, items, store)


@task(name="evaluate-repaired-variants", cache_policy=NO_CACHE)
def evaluate_repaired_variants(
    params: Params,
    paths: Paths,
    model,
    tokenizer,
    sets: Sequence[list[int]],
    items: Mapping[str, Sequence[MCItem]],
    store: PartStore,
) -> int:
    """:func:`evaluate_repaired_sets` as the stage's task: every set measured after its linear repair."""
    return evaluate_repaired_sets(params, paths, model, tokenizer, sets, items, store)
