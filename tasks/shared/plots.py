"""Matplotlib figures shared by stages and the report (written as PNG, logged to MLflow)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def fit_scatter(pred: np.ndarray, true: np.ndarray, groups: np.ndarray, title: str, path: Path):
    """Predicted-vs-true utilities, coloured by the number of kept layers."""
    fig, ax = plt.subplots(figsize=(5, 5))
    sc = ax.scatter(true, pred, c=groups, s=12, cmap="viridis")
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xlabel="true utility (LLM)", ylabel="predicted utility (surrogate)", title=title)
    fig.colorbar(sc, ax=ax, label="kept layers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return fig


def contribution_bars(values: np.ndarray, stderr: np.ndarray, dropped: list[int], title: str, path: Path):
    """Per-layer contributions with ±2 standard errors; dropped layers in red."""
    fig, ax = plt.subplots(figsize=(max(6, len(values) * 0.3), 3.5))
    colors = ["tab:red" if i in dropped else "tab:blue" for i in range(len(values))]
    ax.bar(np.arange(len(values)), values, yerr=2 * stderr, color=colors, capsize=2)
    ax.set(xlabel="layer", ylabel="contribution", title=title)
    ax.set_xticks(np.arange(len(values)))
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return fig


def ppl_bars(ppl: dict[str, dict[str, float]], title: str, path: Path | None = None):
    """Held-out perplexity per corpus (log scale), one bar per model (e.g. ``{"full": {...}, "pruned": {...}}``)."""
    models, corpora = list(ppl), list(next(iter(ppl.values()), {}))
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(corpora)), 3.5))
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        ax.bar(np.arange(len(corpora)) + i * width, [ppl[model][c] for c in corpora], width, label=model)
    ax.set_xticks(np.arange(len(corpora)) + width * (len(models) - 1) / 2, corpora)
    ax.set(ylabel="perplexity", yscale="log", title=title)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def accuracy_bars(zero_shot: dict[str, dict[str, float]], title: str, path: Path | None = None):
    """Zero-shot accuracy per task with ±1 standard error."""
    tasks = list(zero_shot)
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(tasks)), 3.5))
    acc = [zero_shot[t]["acc"] for t in tasks]
    err = [zero_shot[t].get("acc_stderr", 0.0) for t in tasks]
    ax.bar(np.arange(len(tasks)), acc, yerr=err, capsize=3)
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=30, ha="right")
    ax.set(ylabel="accuracy", ylim=(0, 1), title=title)
    fig.tight_layout()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def note_figure(text: str, path: Path):
    """A figure that only says ``text``: the declared plot of a stage that had nothing to draw."""
    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return fig


def close(fig) -> None:
    plt.close(fig)
