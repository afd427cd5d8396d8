"""Documents split into disjoint parts by id, and tokenized into fixed-length windows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from shapprune.data.documents import DOC_SEPARATOR, Document


def split_documents(
    docs: Sequence[Document],
    fractions: dict[str, float],
    rng: np.random.Generator,
    exclude_ids: Iterable[str] = frozenset(),
) -> dict[str, list[Document]]:
    """Disjoint random split by document, e.g. ``{"calibration": 0.5, "test": 0.5}``.

    Documents whose id is in ``exclude_ids`` are dropped first. Fractions may sum to less than one (the
    rest is unused); a zero fraction gives an empty part. Each part keeps the corpus order.
    """
    values = np.array(list(fractions.values()), dtype=np.float64).round(12)  # 1 - 0.9 - 0.1 -> 0, not -3e-17
    if not fractions or (values < 0).any() or values.sum() > 1 + 1e-9:
        raise ValueError(f"fractions must be >= 0 and sum to at most 1, got {fractions}")
    excluded = set(exclude_ids)
    pool = [doc for doc in docs if doc.doc_id not in excluded]
    bounds = np.round(np.cumsum(values) * len(pool)).astype(np.int64).clip(max=len(pool))
    order = rng.permutation(len(pool))
    parts, start = {}, 0
    for (name, fraction), stop in zip(fractions.items(), bounds, strict=True):
        if fraction > 0 and stop <= start:
            raise ValueError(f"split {name!r} gets no document out of {len(pool)}; raise its fraction")
        parts[name] = [pool[i] for i in np.sort(order[start:stop])]
        start = stop
    return parts


def resolve_add_bos(tokenizer: Any, add_bos: bool | Literal["auto"]) -> bool:
    """``"auto"`` -> True iff the tokenizer has a BOS token and adds it itself."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if add_bos == "auto":
        return bos_id is not None and list(tokenizer("a")["input_ids"][:1]) == [bos_id]
    if add_bos and bos_id is None:
        raise ValueError("add_bos=True but the tokenizer has no bos_token_id; pass add_bos=False or 'auto'")
    return bool(add_bos)


def tokenize_stream(tokenizer: Any, docs: Sequence[Document]) -> np.ndarray:
    """Token ids (no special tokens) of all documents joined by ``DOC_SEPARATOR``: (n_tokens,) int64."""
    if not docs:
        return np.zeros(0, dtype=np.int64)
    encoded = tokenizer([doc.text for doc in docs], add_special_tokens=False, verbose=False)["input_ids"]
    sep = np.asarray(tokenizer(DOC_SEPARATOR, add_special_tokens=False)["input_ids"], dtype=np.int64)
    pieces: list[np.ndarray] = []
    for i, ids in enumerate(encoded):
        if i:
            pieces.append(sep)
        pieces.append(np.asarray(ids, dtype=np.int64))
    return np.concatenate(pieces)


def make_windows(
    tokenizer: Any,
    docs: Sequence[Document],
    seq_len: int,
    n_windows: int | None = None,
    rng: np.random.Generator | None = None,
    add_bos: bool | Literal["auto"] = "auto",
) -> np.ndarray:
    """Non-overlapping token windows of the joined documents: (n, seq_len) int64.

    With BOS each window is BOS + ``seq_len - 1`` text tokens. When ``n_windows`` is given, that many
    windows are drawn without replacement with ``rng`` (kept in corpus order), or the first ones if
    ``rng`` is None.
    """
    bos = resolve_add_bos(tokenizer, add_bos)
    body = seq_len - int(bos)
    if body < 1:
        raise ValueError(f"seq_len={seq_len} leaves no room for text; use seq_len >= {2 if bos else 1}")
    stream = tokenize_stream(tokenizer, docs)  # (n_tokens,)
    n_total = stream.size // body
    if n_total == 0:
        raise ValueError(
            f"the corpus has {stream.size} tokens, less than one window of {body}; add documents or lower seq_len"
        )
    windows = stream[: n_total * body].reshape(n_total, body)  # (n_total, body)
    if n_windows is not None:
        if not 0 < n_windows <= n_total:
            raise ValueError(
                f"asked for {n_windows} windows but the documents give {n_total} of {seq_len} tokens; "
                "add documents, lower seq_len or ask for fewer windows"
            )
        index = np.arange(n_windows) if rng is None else np.sort(rng.choice(n_total, n_windows, replace=False))
        windows = windows[index]  # (n_windows, body)
    if bos:
        bos_col = np.full((windows.shape[0], 1), tokenizer.bos_token_id, dtype=np.int64)
        windows = np.concatenate([bos_col, windows], axis=1)  # (n, seq_len)
    return np.ascontiguousarray(windows, dtype=np.int64)
