"""Token n-gram hashing: near-duplicate removal and disjointness checks between window sets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shapprune.data.documents import Document

DEDUP_NGRAM_WORDS = 13  # documents sharing a 13-word run with an earlier document are near-duplicates

_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """uint64 polynomial hash of every length-``n`` run along the last axis: (..., L) -> (..., L-n+1)."""
    ids = np.asarray(ids).astype(np.uint64)
    length = ids.shape[-1] - n + 1
    out = np.zeros((*ids.shape[:-1], max(length, 0)), dtype=np.uint64)
    if length <= 0:
        return out
    with np.errstate(over="ignore"):
        for k in range(n):  # Horner's scheme, wrapping modulo 2**64
            out = out * _HASH_MULT + ids[..., k : k + length] + np.uint64(1)
    return out


def deduplicate(docs: Sequence[Document], ngram_words: int = DEDUP_NGRAM_WORDS) -> list[Document]:
    """Drop documents whose id or text repeats, or that share ``ngram_words`` words in a row with an earlier one."""
    if not docs:
        return []
    vocab: dict[str, int] = {}
    hashes = [
        np.unique(_ngram_hashes(np.array([vocab.setdefault(w, len(vocab)) for w in doc.text.split()]), ngram_words))
        for doc in docs
    ]
    owner = np.repeat(np.arange(len(docs)), [h.size for h in hashes])  # (n_hashes,) document of each n-gram
    _, first, inverse = np.unique(np.concatenate(hashes), return_index=True, return_inverse=True)
    first_owner = owner[first][inverse]  # (n_hashes,) earliest document holding the same n-gram
    repeated = np.zeros(len(docs), dtype=bool)
    repeated[owner[first_owner < owner]] = True
    seen_ids, seen_texts = set(), set()
    kept = []
    for doc, is_repeat in zip(docs, repeated, strict=True):
        if not (is_repeat or doc.doc_id in seen_ids or doc.text in seen_texts):
            kept.append(doc)
        seen_ids.add(doc.doc_id)
        seen_texts.add(doc.text)
    return kept


def shared_ngrams(a: np.ndarray, b: np.ndarray, ngram: int = 32) -> int:
    """Number of distinct token n-grams (within rows) that occur in both window sets ``a`` and ``b``."""
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    ha = np.unique(_ngram_hashes(np.atleast_2d(a), ngram))  # (n_a,)
    hb = np.unique(_ngram_hashes(np.atleast_2d(b), ngram))  # (n_b,)
    return int(np.intersect1d(ha, hb, assume_unique=True).size)


def assert_disjoint(a: np.ndarray, b: np.ndarray, ngram: int = 32) -> None:
    """Raise ``AssertionError`` if windows ``a`` and ``b`` (n, seq_len) share any ``ngram``-token run."""
    n_shared = shared_ngrams(a, b, ngram)
    if n_shared:
        raise AssertionError(
            f"the window sets share {n_shared} distinct {ngram}-token n-grams; split by document and "
            "exclude the overlapping documents (e.g. split_documents(..., exclude_ids=...))"
        )
