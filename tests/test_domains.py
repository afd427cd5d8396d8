"""In-domain labels of held-out corpora and the out-of-domain figure, on constructed inputs."""

from __future__ import annotations

import math

import pytest

from shapprune.data.domains import label_corpora, out_of_domain_ratio, shared_origins


def test_a_corpus_sharing_a_source_with_calibration_or_repair_is_in_domain():
    # the default: wiki extracts calibrate, half the repair text is CoQA (Wikipedia, CNN, Gutenberg, ...)
    feeding = ["wiki_extracts", "wiki_extracts", "coqa_stories"]
    labels = label_corpora({"wiki": "wiki_extracts", "news": "lee_news", "web": "enwiki_dump"}, feeding)
    assert labels == {"wiki": ["wikipedia"], "news": [], "web": ["wikipedia"]}
    assert shared_origins("hf:c4", feeding) == []  # web crawl: none of these
    assert shared_origins("hf:wikitext", ["lee_news"]) == []  # in-domain only relative to what feeds the run
    assert shared_origins("my_corpus", ["my_corpus"]) == ["my_corpus"]  # an unlisted source is its own origin


def test_the_out_of_domain_figure_is_the_geometric_mean_over_the_other_corpora():
    ratios = {"wiki": 0.9, "news": 1.2, "code": 3.0, "legal": 1.5}
    labels = {"wiki": True, "news": False, "code": False, "legal": False}
    assert out_of_domain_ratio(ratios, labels) == pytest.approx(math.exp((math.log(1.2 * 3.0 * 1.5)) / 3))
    assert out_of_domain_ratio({"wiki": 0.9}, {"wiki": True}) is None  # nothing out of domain: no figure
    with pytest.raises(ValueError, match=r"no in-domain label for corpora \['code'\]"):
        out_of_domain_ratio(ratios, {"wiki": True, "news": False, "legal": False})


def test_the_default_held_out_corpora_hold_five_kinds_of_text_nothing_practises_on():
    from shapprune.config import load_params
    from tests.conftest import ROOT

    data = load_params(ROOT / "params.yaml").prepare_data
    labels = label_corpora(data.eval_corpora, data.feeding_sources())
    assert sorted(role for role, shared in labels.items() if not shared) == [
        "biomed", "fiction", "news", "reference", "science", "speech"
    ]  # fmt: skip
