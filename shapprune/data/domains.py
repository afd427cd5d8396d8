"""Which held-out corpora are in-domain, and the out-of-domain figure.

A held-out corpus is *in-domain* when its source, or the source of its documents, also feeds the calibration or
the repair text: Wikipedia extracts calibrate, so a Wikipedia dump held out is in-domain although no document is
shared (shared documents are refused outright: ``shapprune.data.ngrams.assert_disjoint``). The out-of-domain
figure is the geometric mean of a model's perplexity ratios (against the full model) over the other corpora:
what a user can expect on text that nothing in the pipeline practised on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

# Where each source's documents come from. CoQA's passages come from five sources (its paper's domains).
ORIGINS: dict[str, frozenset[str]] = {
    "wiki_extracts": frozenset({"wikipedia"}),
    "enwiki_dump": frozenset({"wikipedia"}),
    "lee_news": frozenset({"abc-news"}),  # the Lee corpus: Australian Broadcasting Corporation news mail
    "coqa_stories": frozenset({"mctest", "race", "cnn", "wikipedia", "gutenberg"}),
    "lambada": frozenset({"bookcorpus"}),  # novels by unpublished authors (Smashwords), not Gutenberg
    "qasper": frozenset({"s2orc-nlp-papers"}),
    "pubmedqa": frozenset({"pubmed"}),
    "sotu": frozenset({"us-state-of-the-union"}),
    "factbook": frozenset({"cia-world-factbook"}),
    "drop": frozenset({"wikipedia"}),  # DROP's passages are Wikipedia's (history, NFL game summaries)
    "sciq": frozenset({"science-textbooks"}),  # SciQ's support: CK-12 and other school textbooks
    "medqa": frozenset({"usmle"}),  # US medical licensing exam questions, not PubMed
    "gsm8k": frozenset({"gsm8k"}),  # written for the data set by crowd workers
    "hf:wikitext": frozenset({"wikipedia"}),
    "hf:ptb": frozenset({"wsj"}),
    "hf:c4": frozenset({"common-crawl"}),
}


def origins(source: str) -> frozenset[str]:
    """The sources ``source``'s documents come from (a source not listed here is its own)."""
    return ORIGINS.get(source, frozenset({source}))


def shared_origins(source: str, feeding: Iterable[str]) -> list[str]:
    """The origins ``source`` shares with any of the ``feeding`` sources (calibration and repair), sorted."""
    fed = frozenset().union(*(origins(f) for f in feeding))
    return sorted(origins(source) & fed)


def label_corpora(eval_corpora: Mapping[str, str], feeding: Iterable[str]) -> dict[str, list[str]]:
    """Role -> the origins its source shares with the text that feeds calibration or repair (empty: out of
    domain)."""
    feeding = list(feeding)
    return {role: shared_origins(source, feeding) for role, source in eval_corpora.items()}


def out_of_domain_ratio(ratios: Mapping[str, float], in_domain: Mapping[str, bool]) -> float | None:
    """The geometric mean of ``ratios`` (role -> PPL / full PPL) over the roles that are not in-domain; None when
    every corpus is in-domain (there is no out-of-domain figure to give)."""
    unknown = set(ratios) - set(in_domain)
    if unknown:
        raise ValueError(f"no in-domain label for corpora {sorted(unknown)}; label every held-out corpus")
    out = [ratios[role] for role in ratios if not in_domain[role]]
    if not out:
        return None
    if any(not r > 0 for r in out):
        raise ValueError(f"perplexity ratios must be positive, got {out}")
    return math.exp(sum(math.log(r) for r in out) / len(out))
