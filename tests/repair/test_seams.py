"""Runs of dropped layers, the MLP output projection of each architecture, and merging a map into a weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from shapprune.repair.seams import dropped_runs, embeddings_tied, merge_map, mlp_out_proj, seam_of
from shapprune.surgery import decoder_layers
from tests.repair.conftest import tiny, tiny_arch


@pytest.mark.parametrize(
    ("keep", "runs"),
    [
        ([1, 1, 1], []),
        ([1, 0, 0, 1, 0], [(1, 3), (4, 5)]),
        ([0, 1], [(0, 1)]),
        ([0, 0, 1, 0, 1, 1, 0, 0], [(0, 2), (3, 4), (6, 8)]),
    ],
)
def test_dropped_runs(keep: list[int], runs: list[tuple[int, int]]) -> None:
    assert dropped_runs(np.array(keep, dtype=bool)) == runs


@pytest.mark.parametrize(
    ("arch", "name", "kind"),
    [
        ("llama", "mlp.down_proj", nn.Linear),
        ("qwen2", "mlp.down_proj", nn.Linear),
        ("gemma2", "mlp.down_proj", nn.Linear),
        ("gpt_neox", "mlp.dense_4h_to_h", nn.Linear),
        ("falcon", "mlp.dense_4h_to_h", nn.Linear),
        ("phi", "mlp.fc2", nn.Linear),
        ("opt", "fc2", nn.Linear),
        ("gpt2", "mlp.c_proj", Conv1D),
    ],
)
def test_mlp_out_proj_per_architecture(arch: str, name: str, kind: type) -> None:
    model = tiny_arch(arch)
    found, module = mlp_out_proj(decoder_layers(model)[1])
    assert found == name and isinstance(module, kind)


def test_unknown_mlp_names_what_to_add() -> None:
    layer = nn.Module()
    layer.ffn = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="MLP_OUT_NAMES"):
        mlp_out_proj(layer)


def test_seam_targets() -> None:
    model = tiny()
    assert seam_of(model, 3, 5).target == "model.layers.2.mlp.down_proj"
    assert seam_of(model, 3, 5).module is decoder_layers(model)[2].mlp.down_proj
    assert seam_of(model, 0, 2).target == "model.embed_tokens"
    assert seam_of(tiny_arch("gpt2"), 2, 3).target == "transformer.h.1.mlp.c_proj"


def test_embeddings_tied() -> None:
    assert embeddings_tied(tiny()) and not embeddings_tied(tiny(tied=False))


@pytest.mark.parametrize(
    "module",
    [nn.Linear(6, 4, dtype=torch.float64), nn.Linear(6, 4, bias=False, dtype=torch.float64), Conv1D(4, 6)],
    ids=["linear", "linear-no-bias", "conv1d"],
)
def test_merge_map_multiplies_the_output(module: nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    module = module.double()
    if getattr(module, "bias", None) is not None:
        nn.init.normal_(module.bias, generator=gen)
    x = torch.randn(5, 6, generator=gen, dtype=torch.float64)  # [N, m]
    t = torch.randn(4, 4, generator=gen, dtype=torch.float64)  # [d, d]
    before = module(x)  # [N, d]
    merge_map(module, t)
    torch.testing.assert_close(module(x), before @ t, rtol=1e-12, atol=1e-12)


def test_merge_map_into_embedding() -> None:
    gen = torch.Generator().manual_seed(0)
    embed = nn.Embedding(10, 4).double()
    ids = torch.arange(10)
    t = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    before = embed(ids)  # [10, d]
    merge_map(embed, t)
    torch.testing.assert_close(embed(ids), before @ t, rtol=1e-12, atol=1e-12)
