"""Corpora on the Hugging Face Hub (need internet): where each lives, and its rows as documents."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shapprune.data.documents import Document


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


def parse_hf_source(source: str) -> HFSpec:
    """``hf:<path>[:<config>[:<split>[:<text_field>]]]`` (or an alias of ``HF_ALIASES``) -> spec."""
    if source in HF_ALIASES:
        return HF_ALIASES[source]
    parts = source.removeprefix("hf:").split(":")
    if not parts[0] or len(parts) > 4:
        raise ValueError(f"bad Hub source {source!r}; write it as 'hf:<path>[:<config>[:<split>[:<field>]]]'")
    path, config, split, field = (parts + [None] * 3)[:4]
    return HFSpec(path, config or None, split or "test", field or "text")


def load_hub(spec: HFSpec) -> list[Document]:
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
