import copy

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

from shapprune.surgery import decoder_layers, keep_layers, kept_layers, num_layers

KEEP = np.array([True, False, True, True, False, True])


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids, use_cache=False).logits


def _reference(model, keep):
    """A model built from a config with fewer layers, loaded with the kept layers' weights."""
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = int(keep.sum())
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [t for t, k in zip(config.layer_types, keep) if k]
    ref = type(model)(config).eval()
    kept = np.flatnonzero(keep)
    state = {}
    for name, value in model.state_dict().items():
        if ".layers." in name:
            prefix, rest = name.split(".layers.", 1)
            idx, tail = rest.split(".", 1)
            if int(idx) not in kept:
                continue
            name = f"{prefix}.layers.{int(np.flatnonzero(kept == int(idx))[0])}.{tail}"
        state[name] = value
    ref.load_state_dict(state)
    return ref


def test_kept_layers_equals_a_model_built_without_them(tiny_model, ids):
    ref = _logits(_reference(tiny_model, KEEP), ids)
    with kept_layers(tiny_model, KEEP):
        got = _logits(tiny_model, ids)
        assert num_layers(tiny_model) == 4 and tiny_model.config.num_hidden_layers == 4
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_context_restores_the_full_model(tiny_model, ids):
    before = _logits(tiny_model, ids)
    idx_before = [layer.self_attn.layer_idx for layer in decoder_layers(tiny_model)]
    with kept_layers(tiny_model, KEEP):
        pass
    torch.testing.assert_close(_logits(tiny_model, ids), before, rtol=0, atol=0)
    assert [layer.self_attn.layer_idx for layer in decoder_layers(tiny_model)] == idx_before == list(range(6))
    assert tiny_model.config.num_hidden_layers == 6


def test_keep_layers_reindexes_and_saves_a_loadable_model(tiny_model, ids, tmp_path):
    model = copy.deepcopy(tiny_model)
    ref = _logits(_reference(tiny_model, KEEP), ids)
    keep_layers(model, KEEP)
    assert [layer.self_attn.layer_idx for layer in decoder_layers(model)] == [0, 1, 2, 3]
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_hidden_layers == 4
    torch.testing.assert_close(_logits(reloaded, ids), ref, rtol=0, atol=0)


def test_generation_with_cache_after_surgery(tiny_model, ids):
    model = keep_layers(copy.deepcopy(tiny_model), KEEP)
    out = model.generate(ids[:1, :5], max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 9)


def test_layer_types_follow_the_kept_layers(ids):
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=256,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=6,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        sliding_window=4,
        max_position_embeddings=64,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
    )
    model = Gemma3ForCausalLM(config).eval()
    ids = ids % 256
    ref = _logits(_reference(model, KEEP), ids)
    with kept_layers(model, KEEP):
        assert model.config.layer_types == [
            "sliding_attention",
            "full_attention",
            "sliding_attention",
            "full_attention",
        ]
        torch.testing.assert_close(_logits(model, ids), ref, rtol=0, atol=0)
    assert len(model.config.layer_types) == 6


def test_bad_masks_are_refused(tiny_model):
    with pytest.raises(ValueError, match="5 entries but the model has 6"):
        keep_layers(tiny_model, [True] * 5)
    with pytest.raises(ValueError, match="keep at least one"):
        keep_layers(tiny_model, [False] * 6)


def test_empty_coalition_scores_embeddings_through_the_head(tiny_model, ids):
    """The game's empty coalition: no decoder layer, hidden states go straight to the final norm and head."""
    model = tiny_model
    with torch.inference_mode():
        hidden = model.model.norm(model.model.embed_tokens(ids))  # [b, T, d]
        expected = model.lm_head(hidden)  # [b, T, V]
    with kept_layers(model, [False] * 6), torch.inference_mode():
        got = model(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert len(decoder_layers(model)) == 6  # restored afterwards
