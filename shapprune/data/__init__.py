"""English text corpora (offline and Hub) turned into fixed-length token windows.

``sources``: corpora as documents (``hub``: those on the Hugging Face Hub); ``ngrams``: near-duplicate removal
and disjointness checks; ``windows``: splits by document and token windows; ``splits``: every split, each from
its own stream.
"""

from shapprune.data.documents import DOC_SEPARATOR, Document
from shapprune.data.hub import HF_ALIASES, HFSpec, group_wikitext_articles, parse_hf_source
from shapprune.data.ngrams import DEDUP_NGRAM_WORDS, assert_disjoint, deduplicate, shared_ngrams
from shapprune.data.sources import OFFLINE_SOURCES, clean_wiki_markup, document_ids, load_documents, package_dir
from shapprune.data.splits import WindowPlan, draw_splits, repair_counts, split_stream
from shapprune.data.windows import make_windows, resolve_add_bos, split_documents, tokenize_stream

__all__ = [
    "DEDUP_NGRAM_WORDS",
    "DOC_SEPARATOR",
    "HF_ALIASES",
    "OFFLINE_SOURCES",
    "Document",
    "WindowPlan",
    "HFSpec",
    "assert_disjoint",
    "clean_wiki_markup",
    "deduplicate",
    "document_ids",
    "draw_splits",
    "group_wikitext_articles",
    "load_documents",
    "make_windows",
    "package_dir",
    "parse_hf_source",
    "repair_counts",
    "resolve_add_bos",
    "shared_ngrams",
    "split_documents",
    "split_stream",
    "tokenize_stream",
]
