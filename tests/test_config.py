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
        "value) (got {'n_drops': None, 'strategy': 'surrogate', 'reuse_scores': True, 'screen_windows': 0, "
        "'per_k_candidates': 8, "
        "'beam_width': 32, 'n_blocks': 4, 'rounds': 3, 'surrogate': 'mlp', 'repair': 'none'})"
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
