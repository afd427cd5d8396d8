"""params.yaml validation: every rule gives one line that names the key and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shapprune.config import ConfigError, load_params, parse_params
from shapprune.model_source import resolve_source

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def _with(section: str, **values) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw[section].update(values)
    return raw


def test_default_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.sample_masks.resolve_strata(30) == [28, 25, 23, 20, 17]
    assert params.prune.resolve_n_drop(30) == 6


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("prune", {"ratio": 1.5}, "prune.ratio"),
        ("prune", {"ratio": 0.0}, "prune.ratio"),
        ("prune", {"n_drop": 3, "ratio": 0.2}, "prune"),
        ("prune", {"n_drop": 0, "ratio": None}, "prune.n_drop"),
        ("base", {"dtype": "float8"}, "base.dtype"),
        ("base", {"device": "tpu"}, "base.device"),
        ("sample_masks", {"n_masks": 0}, "sample_masks.n_masks"),
        ("sample_masks", {"keep_fractions": [0.5, 1.2]}, "sample_masks.keep_fractions"),
        ("score_masks", {"utility": "accuracy"}, "score_masks.utility"),
        ("estimate_shapley", {"estimator": "banzhaf"}, "estimate_shapley.estimator"),
        ("evaluate", {"tasks": ["piqa", "mmlu_pro"]}, "evaluate.tasks"),
        ("prepare_data", {"eval_corpora": {}}, "prepare_data"),
        ("prepare_data", {"calibration_fraction": 0.95, "validation_fraction": 0.1}, "prepare_data"),
        ("fit_surrogate", {"optimizer": "lbfgs"}, "fit_surrogate.optimizer"),
        ("fit_surrogate", {"epochs": -1}, "fit_surrogate.epochs"),
        ("evaluate", {"n_items": "most"}, "evaluate.n_items"),
        ("evaluate", {"dtype": "int8"}, "evaluate.dtype"),
        ("repair", {"fit": "full"}, "repair.fit"),
        ("compare", {"bootstrap": 10}, "compare.bootstrap"),
    ],
)
def test_bad_values_name_the_key(section, values, key):
    with pytest.raises(ConfigError) as err:
        parse_params(_with(section, **values))
    lines = str(err.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"params.yaml: {key}")


def test_unknown_keys_and_several_problems_at_once():
    raw = _with("prune", ratio=2.0)
    raw["evaluate"]["n_itmes"] = 5
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    lines = str(err.value).splitlines()
    assert len(lines) == 2
    assert any("evaluate.n_itmes: unknown key" in line for line in lines)


def test_cross_section_rule():
    raw = _with("score_masks", utility="neg_log_ppl")
    with pytest.raises(ConfigError, match="fit_surrogate.output"):
        parse_params(raw)


def test_rules_that_need_the_layer_count():
    params = parse_params(_with("prune", n_drop=30, ratio=None))
    with pytest.raises(ConfigError, match="removing 30 of 30 layers"):
        params.prune.resolve_n_drop(30)
    params = parse_params(_with("sample_masks", strata=[31, 20]))
    with pytest.raises(ConfigError, match="sample_masks.strata"):
        params.sample_masks.resolve_strata(30)


def test_unknown_model_sources():
    with pytest.raises(ValueError, match="package 'no_such_pkg' is not installed"):
        resolve_source("pkg://no_such_pkg/model.gguf")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_source("/no/such/model.gguf")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_source("./no/such/dir")


@pytest.mark.slow  # several seconds: the full tier runs it
def test_stage_exits_2_with_one_line_and_touches_nothing(tmp_path):
    raw = _with("prune", ratio=1.5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "data").mkdir()
    sentinel = tmp_path / "data" / "scores.parquet"
    sentinel.write_bytes(b"already computed")
    out = subprocess.run(
        [sys.executable, "-m", "flows.prune", "--root", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: params.yaml: prune.ratio: Input should be less than 1 (got 1.5)"]
    assert sentinel.read_bytes() == b"already computed"


def test_params_yaml_is_the_one_source_of_defaults():
    from pydantic import BaseModel

    from shapprune.config import Params

    def fields(model: type[BaseModel], prefix: str = ""):
        for name, info in model.model_fields.items():
            yield prefix + name, info
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                yield from fields(info.annotation, f"{prefix}{name}.")

    with_default = [key for key, info in fields(Params) if not info.is_required()]
    assert with_default == [], f"schema defaults that could disagree with params.yaml: {with_default}"


def test_a_missing_key_names_the_fix():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["select"]["budget"]
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert str(err.value) == (
        "params.yaml: select.budget: missing; add it (the project's params.yaml lists every key with its default "
        "value) (got {'n_drops': None, 'strategy': 'budgeted', 'reuse_scores': True, 'screen_windows': 0, "
        "'per_k_candidates': 8, "
        "'beam_width': 32, 'n_blocks': 4, 'rounds': 2, 'surrogate': 'mlp', 'repair': 'none'})"
    )


def test_n_items_all_is_the_whole_task_set():
    params = parse_params(_with("evaluate", n_items="all"))
    assert params.evaluate.n_items is None and parse_params(_with("compare", n_items="all")).compare.n_items is None


def test_eval_windows_all_is_every_window_and_a_word_is_refused_by_name():
    params = parse_params(_with("prepare_data", eval_windows="all", eval_seq_len=2048))
    assert params.prepare_data.eval_windows is None and params.prepare_data.eval_seq_len == 2048
    with pytest.raises(ConfigError, match="'many' is not a number of windows; give one .* or all"):
        parse_params(_with("prepare_data", eval_windows="many"))


def test_a_repair_mix_never_reads_held_out_text():
    mix = {"wiki_extracts": 0.5, "coqa_stories": 0.5}
    assert parse_params(_with("prepare_data", repair_mix=mix)).prepare_data.repair_mix == mix
    assert "coqa_stories" in parse_params(_with("prepare_data", repair_mix=mix)).prepare_data.sources()
    with pytest.raises(ConfigError) as err:
        parse_params(_with("prepare_data", repair_mix={"wiki_extracts": 0.5, "lee_news": 0.5}))
    (line,) = str(err.value).splitlines()
    assert line.startswith("params.yaml: prepare_data") and "lee_news is the held-out corpus 'news'" in line
    assert "use another source, e.g. coqa_stories" in line
    with pytest.raises(ConfigError, match="positive shares; use null"):
        parse_params(_with("prepare_data", repair_mix={"wiki_extracts": 1.0, "coqa_stories": 0.0}))


def _load_with(tmp_path: Path, section: str, **values):
    """``load_params`` (the stages' loader) on a copy of the project's params.yaml with ``section`` overridden."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_with(section, **values), sort_keys=False))
    return load_params(path)


SOURCES = (
    "use one of wiki_extracts, lee_news, enwiki_dump, coqa_stories, lambada, qasper, pubmedqa, sotu, factbook, "
    "drop, sciq, medqa, gsm8k (offline), hf:wikitext, hf:ptb, hf:c4 or hf:<path>[:<config>[:<split>[:<text_field>]]] "
    "(the Hub)"
)
ALL_METHODS = "shapley, select, block_influence, angular, sleb, ppl, taylor, random, oracle, iterative_shapley"


@pytest.mark.parametrize(
    ("section", "values", "line"),
    [
        (
            "prepare_data",
            {"repair_mix": {"wiki_extracts": 0.5, "nosuch": 0.5}},
            f"params.yaml: prepare_data.repair_mix: unknown text source 'nosuch'; {SOURCES} "
            "(got {'wiki_extracts': 0.5, 'nosuch': 0.5})",
        ),
        (
            "prepare_data",
            {"calibration_source": "wikitext"},
            f"params.yaml: prepare_data.calibration_source: unknown text source 'wikitext'; {SOURCES} (got 'wikitext')",
        ),
        (
            "prepare_data",
            {"eval_corpora": {"wiki": "wiki_extracts", "news": "lee_news", "web": "c4"}},
            f"params.yaml: prepare_data.eval_corpora: unknown text source 'c4'; {SOURCES} "
            "(got {'wiki': 'wiki_extracts', 'news': 'lee_news', 'web': 'c4'})",
        ),
        (
            "prepare_data",
            {"eval_corpora": {"wiki": "hf:", "news": "hf:a:b:c:d:e"}},
            f"params.yaml: prepare_data.eval_corpora: unknown text source 'hf:', 'hf:a:b:c:d:e'; {SOURCES} "
            "(got {'wiki': 'hf:', 'news': 'hf:a:b:c:d:e'})",
        ),
        (
            "prune",
            {"method": "shapely"},
            f"params.yaml: prune.method: unknown method 'shapely'; choose from {ALL_METHODS} (got 'shapely')",
        ),
        (
            "compare",
            {"methods": ["sleb", "slab"]},
            f"params.yaml: compare.methods: unknown method(s) ['slab']; choose from {ALL_METHODS} (or [] to skip) "
            "(got ['sleb', 'slab'])",
        ),
        (
            "evaluate",
            {"tasks": ["piqa", "mmlu"]},
            "params.yaml: evaluate.tasks: unknown task(s) ['mmlu']; choose from piqa, hellaswag, winogrande, "
            "arc_easy, arc_challenge, boolq, openbookqa (lm-eval's other tasks go in evaluate.lm_eval_tasks) "
            "(got ['piqa', 'mmlu'])",
        ),
        (
            "score_layers",
            {"iterative_estimator": "paper"},
            "params.yaml: score_layers.iterative_estimator: Input should be 'surrogate_cv', 'svarm', 'permutation', "
            "'stratified' or 'surrogate_shapley' (got 'paper')",
        ),
        (
            "select",
            {"surrogate": "svm"},
            "params.yaml: select.surrogate: Input should be 'mlp', 'ridge', 'gbr', 'quadratic' or 'gp' (got 'svm')",
        ),
        (
            "compare",
            {"repairs": ["none", "lora"]},
            "params.yaml: compare.repairs.1: Input should be 'none' or 'linear' (got 'lora')",
        ),
    ],
)
def test_every_name_is_checked_at_the_edge_in_one_line_naming_the_accepted_ones(tmp_path, section, values, line):
    with pytest.raises(ConfigError) as err:
        _load_with(tmp_path, section, **values)
    assert str(err.value).splitlines() == [line]


def test_hub_sources_and_every_offline_source_are_accepted(tmp_path):
    mix = {"coqa_stories": 0.4, "enwiki_dump": 0.3, "hf:allenai/c4:en:validation:text": 0.3}
    corpora = {"wiki": "hf:wikitext", "news": "hf:ptb", "web": "hf:c4"}
    params = _load_with(tmp_path, "prepare_data", calibration_source="lee_news", eval_corpora=corpora, repair_mix=mix)
    assert params.prepare_data.sources() == sorted({"lee_news", *corpora.values(), *mix})


def test_the_names_the_schema_accepts_are_the_registries_names():
    """shapprune.config checks names against plain tuples (no torch); they must be what the code runs."""
    from typing import get_args

    from shapprune.baselines.registry import BASELINES, METHODS
    from shapprune.config import EstimateShapley, ScoreLayers, Select
    from shapprune.config.names import PRUNE_METHODS, ZERO_SHOT_TASKS
    from shapprune.data.sources import OFFLINE_SOURCES, _load_cached
    from shapprune.estimators import ESTIMATORS
    from shapprune.estimators.regressors import SURROGATES
    from shapprune.evaluation.zero_shot import _TASK_SPECS, TASKS

    assert PRUNE_METHODS == METHODS == ("shapley", "select", *BASELINES)
    assert ZERO_SHOT_TASKS == TASKS and set(TASKS) == set(_TASK_SPECS)
    assert set(get_args(EstimateShapley.model_fields["estimator"].annotation)) == set(ESTIMATORS)
    assert set(get_args(ScoreLayers.model_fields["iterative_estimator"].annotation)) == set(ESTIMATORS) - {"paper"}
    assert set(get_args(Select.model_fields["surrogate"].annotation)) == set(SURROGATES) - {"none"}
    assert set(get_args(EstimateShapley.model_fields["surrogate"].annotation)) == set(SURROGATES) - {"none"} | {"auto"}
    with pytest.raises(ValueError, match="unknown text source 'nosuch'"):
        _load_cached("nosuch", False)  # the loader refuses what the schema refuses
    offline = ("wiki_extracts", "lee_news", "enwiki_dump", "coqa_stories", "lambada", "qasper", "pubmedqa", "sotu")
    assert OFFLINE_SOURCES == (*offline, "factbook", "drop", "sciq", "medqa", "gsm8k")


def test_the_schema_loads_without_torch():
    code = "import sys, shapprune.config; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_baseline_ratio_past_max_drop_ratio_is_refused_before_any_stage_runs(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load_with(tmp_path, "prune", method="sleb", ratio=0.9)
    assert str(err.value).splitlines() == [
        "params.yaml: prune.ratio: 0.9 is past score_layers.max_drop_ratio (0.4), the largest share of the layers "
        "for which score_layers records sleb's sets; set prune.ratio to 0.4 or less, or raise "
        "score_layers.max_drop_ratio"
    ]
    assert _load_with(tmp_path, "prune", method="sleb", ratio=0.4).prune.resolve_n_drop(30) == 12
    # shapley and select have no such limit: they choose any k < L (select searches prune's k itself)
    assert _load_with(tmp_path, "prune", method="select", ratio=0.9).prune.resolve_n_drop(30) == 27
    assert _load_with(tmp_path, "prune", method="shapley", ratio=0.9).prune.resolve_n_drop(30) == 27


def test_a_fractional_select_budget_is_that_share_of_sleb_to_the_largest_k():
    from shapprune.baselines.cost import sleb_cost

    select = parse_params(_with("select", budget=0.25)).select
    assert select.evaluations(30, [6]) == 42 == -(-sleb_cost(30, 6) // 4)  # 165 / 4, rounded up
    assert select.evaluations(30, [3, 6, 9]) == 59  # SLEB's 234 to 9 layers covers 3 and 6 on its way
    assert parse_params(_with("select", budget=0.01)).select.evaluations(30, [1, 2, 3]) == 3  # one per k at least
    assert parse_params(_with("select", budget=24)).select.evaluations(30, [3, 6, 9]) == 24
    with pytest.raises(ConfigError, match="whole number of evaluations, or a fraction below 1"):
        parse_params(_with("select", budget=1.5))


def test_the_default_decision_spends_less_than_sleb_at_prunes_k():
    """The default's LLM evaluations to its decision (the design scored, then select's budget) stay under
    SLEB's at the default k on a 30-layer model (#45); the rounds' cap counts in full when they are on."""
    from shapprune.baselines.cost import sleb_cost

    params = load_params(ROOT / "params.yaml")
    k = params.prune.resolve_n_drop(30)
    spent = params.sample_masks.n_masks + params.select.evaluations(30, [k])
    assert spent <= sleb_cost(30, k), (spent, sleb_cost(30, k))
