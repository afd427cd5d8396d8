"""``base.device: map`` (accelerate's device map): a mapped model scores, skips and reuses prefixes as one on a device.

CI has one CPU and no GPU, so the split is between CPU memory and disk offload (accelerate's hooks move
each offloaded layer's weights in for its forward), the same hooks that move layers between GPUs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate import dispatch_model

from shapprune.models import MAP, input_device, load_model, save_model
from shapprune.prefix import score_with_prefix_reuse
from shapprune.scoring import masked_nll
from shapprune.surgery import keep_layers, num_layers
from tests.conftest import tiny_llama

pytestmark = pytest.mark.slow  # saves and reloads models: the full tier

MASKS = np.array([[1] * 6, [1, 0, 1, 1, 0, 1], [1, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]], bool)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, smol_tokenizer):
    path = tmp_path_factory.mktemp("tiny")
    save_model(tiny_llama(), smol_tokenizer, path)
    return path


def _totals(model, windows):
    return [masked_nll(model, windows, m, batch_size=2).total for m in MASKS]


def test_map_loads_a_saved_model_in_place_and_scores_like_a_plain_load(saved, ids):
    plain, _ = load_model(str(saved))
    mapped, _ = load_model(str(saved), device=MAP)
    assert input_device(mapped) == torch.device("cpu")  # no GPU here: accelerate keeps it all in CPU memory
    windows = ids.numpy()
    assert _totals(mapped, windows) == _totals(plain, windows)


def test_a_model_split_over_memory_and_disk_skips_layers_and_reuses_prefixes_exactly(saved, ids, tmp_path):
    plain, _ = load_model(str(saved))
    windows = ids.numpy()
    expected = _totals(plain, windows)
    split, _ = load_model(str(saved))
    layout = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
    layout |= {f"model.layers.{i}": "cpu" if i < 3 else "disk" for i in range(6)}
    split = dispatch_model(split, layout, offload_dir=str(tmp_path / "offload"))
    assert _totals(split, windows) == expected
    got, stats = score_with_prefix_reuse(split, windows, MASKS, batch_size=2)
    assert [g.total for g in got] == expected and stats.cache_hits > 0
    keep_layers(split, MASKS[1])
    assert num_layers(split) == 4
    with torch.inference_mode():
        torch.testing.assert_close(
            split(input_ids=ids, use_cache=False).logits,
            keep_layers(plain, MASKS[1])(input_ids=ids, use_cache=False).logits,
            rtol=0,
            atol=0,
        )


def test_map_is_a_valid_device_and_a_typo_names_the_choices():
    from shapprune.config import ConfigError
    from tests.conftest import project_params

    assert project_params({"base": {"device": "map"}}).base.device == "map"
    with pytest.raises((ConfigError, ValueError), match="map"):
        project_params({"base": {"device": "maps"}})
