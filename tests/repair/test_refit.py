"""``repair.fit: refit``: the seam's projection refitted by least squares on its inputs (known answers)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from shapprune.models import parameter_count
from shapprune.repair.linear import fit_maps, linear_repair
from shapprune.repair.seams import mlp_out_proj, projection_matrix, set_projection
from shapprune.scoring import window_nll
from shapprune.surgery import decoder_layers, keep_layers
from tests.repair.conftest import LinearUpdate, tiny, tiny_arch

IDS = torch.randint(0, 512, (4, 16), generator=torch.Generator().manual_seed(0))  # [n, T]: 64 tokens > m = 32


def logits(model: torch.nn.Module, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits  # [n, T, V]


def plant_input_linear_layers(model: torch.nn.Module, start: int, stop: int, seed: int) -> torch.Tensor:
    """Layers ``[start, stop)`` add ``H (A_start + ...)``, ``H`` the *input* of layer ``start-1``'s down-projection.

    No d x d map of the projection's output can reproduce that (``M T = H W^T T`` spans only ``W^T``'s
    rows), a refit of the projection can: ``P = W^T + sum A``. Returns that ``sum A`` [m, d].
    """
    layers = decoder_layers(model)
    source: dict = {}
    gen = torch.Generator().manual_seed(seed)
    m, d = model.config.intermediate_size, model.config.hidden_size
    dtype = next(model.parameters()).dtype
    total = torch.zeros(m, d, dtype=torch.float64)
    for i in range(start, stop):
        a = 0.3 * torch.randn(m, d, generator=gen, dtype=torch.float64)
        layers[i] = LinearUpdate(a.to(dtype), source)
        total += a
    layers[start - 1].mlp.down_proj.register_forward_hook(lambda mod, args, out: source.__setitem__("x", args[0]))
    return total


def test_known_answer_refit_is_exact_where_a_map_is_not() -> None:
    model = tiny().double()
    a = plant_input_linear_layers(model, 2, 4, seed=3)
    w0 = decoder_layers(model)[1].mlp.down_proj.weight.detach().double().clone()  # [d, m]
    full = logits(model)
    (mapped,), (map_fit,), _ = fit_maps(model, [(2, 4)], IDS.numpy(), ridge=0.0)
    report = linear_repair(model, [1, 1, 0, 0, 1, 1], IDS.numpy(), ridge=0.0, fit="refit")
    (run,) = report.repaired
    assert report.fit == "refit" and run.target == "model.layers.1.mlp.down_proj" and not report.skipped
    assert run.residual < 1e-10 < 1e-3 < map_fit.residual < run.baseline  # a map cannot do it, the refit can
    torch.testing.assert_close(decoder_layers(model)[1].mlp.down_proj.weight.double(), (w0.T + a).T)
    torch.testing.assert_close(logits(model), full, rtol=1e-9, atol=1e-9)
    assert mapped.p is None and mapped.t is not None


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt", "falcon"])
def test_refit_reproduces_its_residual_and_never_loses_to_the_map(arch: str) -> None:
    """Linear with and without bias and GPT-2's Conv1D: the merged refit is what was fitted, at most the map's miss."""
    model = tiny_arch(arch)
    ids = (IDS % 128).numpy()
    _, (as_map,), _ = fit_maps(model, [(1, 3)], ids, ridge=0.0, fit="map")
    maps, (refit,), _ = fit_maps(model, [(1, 3)], ids, ridge=0.0, fit="refit")
    assert refit.residual <= as_map.residual + 1e-9 and refit.residual < refit.baseline
    module = mlp_out_proj(decoder_layers(model)[0])[1]
    before = projection_matrix(module).clone()
    twin = copy.deepcopy(module)
    maps[0].merge(twin)
    assert not torch.allclose(projection_matrix(twin), before)
    set_projection(twin, before)  # the layout round-trips, bias included
    torch.testing.assert_close(projection_matrix(twin), before.to(twin.weight.dtype).double())
    repaired = copy.deepcopy(model)
    linear_repair(repaired, [1, 0, 0, 1], ids, ridge=0.0, fit="refit")
    assert parameter_count(repaired) == parameter_count(keep_layers(copy.deepcopy(model), [1, 0, 0, 1]))


def test_layer0_run_keeps_its_map_and_the_model_reloads(tmp_path) -> None:
    """A run at layer 0 has no projection to refit: its map goes into the untied embedding as before."""
    model = tiny(tied=False)
    keep = [0, 1, 0, 1, 1, 1]
    mapped = copy.deepcopy(model)
    linear_repair(mapped, keep, IDS.numpy(), fit="map")
    report = linear_repair(model, keep, IDS.numpy(), fit="refit")
    assert [r.target for r in report.repaired] == ["model.embed_tokens", "model.layers.1.mlp.down_proj"]
    torch.testing.assert_close(model.get_input_embeddings().weight, mapped.get_input_embeddings().weight)
    model.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    torch.testing.assert_close(logits(reloaded), logits(model), rtol=0, atol=1e-6)


@pytest.mark.parametrize("keep", [[1, 1, 0, 1, 1, 1], [1, 1, 0, 0, 1, 1]])
def test_refit_lowers_held_out_nll(calibration, keep: list[int]) -> None:
    """Fitted on 16 windows sampled from the full model, better than plain pruning on 16 others (checked here,
    not a theorem: the fit targets hidden states, not the NLL)."""
    full, fit, held = calibration
    repaired = copy.deepcopy(full)
    report = linear_repair(repaired, keep, fit, fit="refit")
    assert all(r.residual < r.baseline for r in report.repaired)
    assert window_nll(repaired, held).mean < window_nll(keep_layers(copy.deepcopy(full), keep), held).mean


def test_bad_fit_arguments() -> None:
    with pytest.raises(ValueError, match="unknown fit"):
        linear_repair(tiny(), [1, 0, 1, 1, 1, 1], IDS.numpy(), fit="full")
    with pytest.raises(ValueError, match="repair.fit: map"):
        linear_repair(tiny(), [1, 0, 1, 1, 1, 1], IDS.numpy(), fit="refit", loss="cosine")


@pytest.mark.parametrize("fit", ["map", "refit"])
def test_runs_sharing_a_start_fitted_together_equal_each_fitted_alone(fit: str) -> None:
    """One pass for (2, 3) and (2, 4) (their X^T X is computed once per batch) gives each run's own fit."""
    model = tiny().double()
    together, _, _ = fit_maps(model, [(2, 3), (2, 4)], IDS.numpy(), fit=fit)
    for fitted in together:
        (alone,), _, _ = fit_maps(model, [(fitted.seam.start, fitted.seam.stop)], IDS.numpy(), fit=fit)
        got, want = (fitted.p, alone.p) if fit == "refit" else (fitted.t, alone.t)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
