"""Every covered family (tests/architectures.py) through surgery, prefix reuse, baselines, repair and save/reload."""

import copy
import itertools

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from shapprune.baselines.ppl import drop_one_nll
from shapprune.baselines.registry import BASELINES, layer_scores
from shapprune.models import parameter_count
from shapprune.prefix import score_with_prefix_reuse
from shapprune.repair.linear import linear_repair
from shapprune.repair.lora import lora_heal, lora_targets
from shapprune.repair.seams import layers_prefix
from shapprune.scoring import masked_nll, score_masks, window_nll
from shapprune.surgery import keep_layers, kept_layers, num_layers
from tests.architectures import CONFIGS, N_LAYERS, NOT_ADDITIVE, VOCAB, tiny

FAMILIES = sorted(CONFIGS)
KEEPS = [np.array([1, 0, 1, 1, 0, 1], bool), np.array([0, 1, 1, 0, 1, 1], bool)]  # the second drops layer 0


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (3, 16), generator=torch.Generator().manual_seed(0))  # [b, T]


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids, use_cache=False).logits  # [b, T, V]


def _built_without(model, keep):
    """The same family built from a config with fewer layers, loaded with the kept layers' weights."""
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = int(keep.sum())
    if getattr(config, "rescale_every", 0):
        config.rescale_every = 0  # surgery turns RWKV's fp16 guard off (see the RWKV test below)
    types = getattr(config, "layer_types", None)
    if types is not None and not isinstance(getattr(type(config), "layer_types", None), property):  # Mamba derives
        config.layer_types = [t for t, k in zip(types, keep) if k]
    ref = type(model)(config).eval()
    prefix, kept = layers_prefix(model) + ".", list(np.flatnonzero(keep))
    state = {}
    for name, value in model.state_dict().items():
        if name.startswith(prefix):
            idx, tail = name[len(prefix) :].split(".", 1)
            if tail.startswith("pre_ln."):  # RWKV's embedding norm belongs to the first block, whichever it is
                name = f"{prefix}0.{tail}"
            elif int(idx) in kept:
                name = f"{prefix}{kept.index(int(idx))}.{tail}"
            else:
                continue
        state[name] = value
    ref.load_state_dict(state)
    return ref


@pytest.mark.parametrize("family", FAMILIES)
def test_kept_layers_equal_a_model_built_without_them(family, ids):
    model = tiny(family)
    _logits(model, ids)  # a first inference pass (RWKV rescales its weights in place on it)
    for keep in KEEPS:
        expected = _logits(_built_without(tiny(family), keep), ids)
        with kept_layers(model, keep):
            assert num_layers(model) == int(keep.sum())
            got = _logits(model, ids)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert num_layers(model) == N_LAYERS


def test_rwkv_without_its_fp16_rescaling_is_the_same_model(ids):
    """RWKV halves its stream every ``rescale_every`` layers (weights pre-divided): off, only LayerNorm's eps moves."""
    model = tiny("rwkv")
    before = _logits(model, ids)  # rescaled (rescale_every=2), weights divided in place
    with kept_layers(model, np.ones(N_LAYERS, bool)):
        after = _logits(model, ids)
    assert model.config.rescale_every == 0
    torch.testing.assert_close(after, before, rtol=0, atol=2e-3)
    assert float((after - before).abs().max()) > 0  # the guard really was active


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_reuse_equals_plain_masked_scoring(family, ids):
    model = tiny(family)
    masks = np.array([[1] * 6, KEEPS[0], [1, 1, 0, 1, 1, 1], [1, 1, 0, 0, 1, 1], KEEPS[1], [0, 1, 1, 1, 1, 0]], bool)
    windows = ids.numpy()
    got, stats = score_with_prefix_reuse(model, windows, masks, batch_size=2)
    assert stats.cache_hits > 0
    assert [g.total for g in got] == [e.total for e in score_masks(model, windows, masks, batch_size=2)]


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_model_reloads_in_plain_transformers_and_generates(family, ids, tmp_path):
    model = tiny(family)
    with kept_layers(model, KEEPS[1]):
        expected = _logits(model, ids)
    pruned = keep_layers(copy.deepcopy(model), KEEPS[1])
    pruned.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_hidden_layers == 4
    torch.testing.assert_close(_logits(reloaded, ids), expected, rtol=0, atol=0)
    out = reloaded.generate(ids[:1, :5], max_new_tokens=3, do_sample=False, pad_token_id=0)  # with its cache
    assert out.shape == (1, 8)


@pytest.mark.slow  # about a second per family
@pytest.mark.parametrize("family", FAMILIES)
def test_every_baseline_scores_every_layer(family, ids):
    """Every criterion runs; those defined by the NLL of cut models agree with cutting the model directly."""
    model = tiny(family)
    opts = {"batch_size": 2, "max_subsets": 64, "protect_first": 1, "protect_last": 1}
    chosen = {}
    for method in BASELINES:
        scores = layer_scores(method, model, ids.numpy(), n_drops=[2], rng=np.random.default_rng(0), **opts)
        chosen[method] = scores.drop(2)
        assert len(chosen[method]) == 2 and len(set(chosen[method])) == 2, method
    nll = {  # every set of 1 and 2 layers, scored without prefix reuse: the known answers
        d: masked_nll(model, ids.numpy(), ~np.isin(np.arange(N_LAYERS), d), batch_size=2).mean
        for k in (1, 2)
        for d in itertools.combinations(range(N_LAYERS), k)
    }
    singles = [nll[(i,)] for i in range(N_LAYERS)]
    np.testing.assert_allclose(drop_one_nll(model, ids.numpy(), batch_size=2), singles, rtol=1e-5)
    assert chosen["ppl"] == sorted(np.argsort(singles, kind="stable")[:2].tolist())
    assert chosen["oracle"] == list(min((d for d in nll if len(d) == 2), key=nll.get))
    first = int(np.argmin(singles))  # SLEB: the best single layer, then the best second one beside it
    second = min((i for i in range(N_LAYERS) if i != first), key=lambda i: nll[tuple(sorted((first, i)))])
    assert chosen["sleb"] == sorted([first, second])


@pytest.mark.parametrize("family", FAMILIES)
def test_linear_repair_merges_where_the_layer_is_additive_and_says_why_not_elsewhere(family, ids):
    model = tiny(family)
    report = linear_repair(model, KEEPS[0], ids.numpy(), batch_size=2)
    assert num_layers(model) == 4
    if family in NOT_ADDITIVE:
        assert not report.repaired and len(report.skipped) == 2
        assert all("not its residual plus" in run.reason for run in report.skipped)
    else:
        assert [(r.start, r.stop) for r in report.repaired] == [(1, 2), (4, 5)]
        assert all(r.residual <= r.baseline for r in report.repaired)
    assert lora_targets(model)  # LoRA healing finds projections in every family


@pytest.mark.slow  # about a second per family
@pytest.mark.parametrize("family", FAMILIES)
def test_lora_heals_every_family_and_merges_to_a_plain_model(family, ids, tmp_path):
    """LoRA applies where the linear repair cannot (Gemma, RWKV): the loss falls, the adapters merge away,
    and plain transformers reloads the healed model with its logits."""
    model = tiny(family)
    keep_layers(model, KEEPS[0])
    if family in ("mamba", "mamba2", "falcon_mamba"):  # peft refuses out_proj there (fused kernels bypass it)
        assert not [t for t in lora_targets(model) if t.endswith("out_proj")]
        assert [t for t in lora_targets(model) if t.endswith("in_proj")]
    windows = ids.numpy()
    before, size = window_nll(model, windows).mean, parameter_count(model)
    healed, report = lora_heal(model, windows, steps=8, rng=np.random.default_rng(0), batch_size=3, lr=1e-2)
    assert window_nll(healed, windows).mean < before and report.losses[-1] < report.losses[0]
    assert parameter_count(healed) == size and not any("lora" in k for k in healed.state_dict())
    healed.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(_logits(reloaded, ids), _logits(healed.eval(), ids), rtol=1e-5, atol=1e-5)
