"""Every split of the prepared text, each drawn from a random stream of its own.

Changing one split's count moves no other split: an experiment that differs from another only in its
calibration size is measured on the same validation, repair and held-out windows.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from shapprune.data.documents import Document
from shapprune.data.ngrams import assert_disjoint
from shapprune.data.windows import make_windows, split_documents


def split_stream(seed: int, split: str) -> np.random.Generator:
    """The random stream of one named split (``validation``, ``repair``, ``heldout:<role>``)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode())])


@dataclass(frozen=True)
class WindowPlan:
    """How many windows of ``seq_len`` tokens each split gets, and from which documents."""

    calibration_source: str
    eval_corpora: Mapping[str, str]  # role -> source
    seq_len: int
    calibration_windows: int
    validation_windows: int
    repair_windows: int
    eval_windows: int | None  # None: every window of the held-out text
    calibration_fraction: float
    validation_fraction: float
    add_bos: bool | Literal["auto"] = "auto"
    eval_seq_len: int | None = None  # tokens per held-out window; None: seq_len
    repair_mix: Mapping[str, float] | None = None  # source -> share of the repair windows; None: calibration source

    def check_context(self, max_positions: int | None) -> None:
        """Refuse windows longer than the model's context (``max_position_embeddings``), in one line."""
        for key, n in (("seq_len", self.seq_len), ("eval_seq_len", self.eval_seq_len)):
            if max_positions and n and n > max_positions:
                from shapprune.config import ConfigError  # here: shapprune.config imports shapprune.data

                raise ConfigError(
                    f"prepare_data.{key}={n} is longer than the model's context of {max_positions} tokens; "
                    f"set it to {max_positions} or less"
                )


def draw_splits(
    plan: WindowPlan, docs: Mapping[str, Sequence[Document]], tokenizer: Any, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]]:
    """``(calibration-source windows by split, held-out windows by role, document counts)``; all int64 (n, seq_len).

    The document split and then the calibration windows use ``default_rng(seed)`` (the calibration
    windows are that stream's last draw, so nothing after them moves); validation, repair and each
    held-out corpus have a stream of their own (``split_stream``). Held-out windows are ``eval_seq_len``
    tokens long (every window when ``eval_windows`` is None). Repair windows come from the calibration
    documents or ``repair_mix``'s sources, never from held-out text. Every held-out set is checked disjoint (by
    n-grams) from every calibration-source split.
    """
    base = np.random.default_rng(seed)
    # articles that also appear in another corpus (same title) never enter calibration/validation
    other_ids = {d.doc_id for s, ds in docs.items() if s != plan.calibration_source for d in ds}
    test_fraction = 1 - plan.calibration_fraction - plan.validation_fraction
    fractions = {"calibration": plan.calibration_fraction, "validation": plan.validation_fraction}
    split = split_documents(docs[plan.calibration_source], fractions | {"test": test_fraction}, base, other_ids)

    def windows(pool: Sequence[Document], n: int | None, rng: np.random.Generator, seq_len: int = plan.seq_len):
        return make_windows(tokenizer, pool, seq_len, n, rng, plan.add_bos)  # (n, seq_len) int64

    calib = {"calibration": windows(split["calibration"], plan.calibration_windows, base)}
    if plan.validation_windows:
        calib["validation"] = windows(split["validation"], plan.validation_windows, split_stream(seed, "validation"))
    if plan.repair_windows:
        calib["repair"] = _repair_windows(plan, split["calibration"], docs, windows, seed)
    held_out = {}
    for role, source in plan.eval_corpora.items():
        pool = split["test"] if source == plan.calibration_source else docs[source]
        rng = split_stream(seed, f"heldout:{role}")
        held_out[role] = windows(pool, plan.eval_windows, rng, plan.eval_seq_len or plan.seq_len)
    for evaluation in held_out.values():  # repair windows of other sources are checked here too
        for cal in calib.values():
            assert_disjoint(cal, evaluation)
    counts = {f"docs_{s}": len(d) for s, d in docs.items()} | {f"docs_{k}": len(v) for k, v in split.items()}
    return calib, held_out, counts


def repair_counts(mix: Mapping[str, float], n: int) -> dict[str, int]:
    """Windows per source for shares ``mix`` of ``n`` (largest remainder, so they add up to ``n``)."""
    shares = np.array(list(mix.values()), dtype=np.float64) * n / sum(mix.values())
    counts = np.floor(shares).astype(np.int64)
    counts[np.argsort(counts - shares, kind="stable")[: n - counts.sum()]] += 1
    return dict(zip(mix, counts.tolist(), strict=True))


def _repair_windows(
    plan: WindowPlan, calibration_docs: Sequence[Document], docs: Mapping[str, Sequence[Document]], windows: Any,
    seed: int,
) -> np.ndarray:  # fmt: skip
    """The repair windows: calibration documents only, or ``plan.repair_mix``'s shares, interleaved.

    The calibration source's share comes from its calibration documents on the ``repair`` stream (so a mix
    of that source alone is today's windows); every other source's from all its documents on a stream of
    its own, ``repair:<source>``. A mix is shuffled once (``repair:order``), so a prefix of the windows
    (``repair.linear_windows``) is a mix too, its shares close to the whole's (not exact).
    """
    mix = plan.repair_mix or {plan.calibration_source: 1.0}
    parts = []
    for source, n in repair_counts(mix, plan.repair_windows).items():
        if n == 0:
            continue
        if source == plan.calibration_source:
            parts.append(windows(calibration_docs, n, split_stream(seed, "repair")))
        else:
            parts.append(windows(docs[source], n, split_stream(seed, f"repair:{source}")))
    if len(parts) == 1:
        return parts[0]
    joined = np.concatenate(parts)  # (repair_windows, seq_len)
    return joined[split_stream(seed, "repair:order").permutation(len(joined))]
