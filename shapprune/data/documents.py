"""One document of a text corpus, and how documents are joined into a token stream."""

from __future__ import annotations

from dataclasses import dataclass

DOC_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Document:
    """One document of a corpus; ``doc_id`` is unique within its source."""

    doc_id: str
    text: str
