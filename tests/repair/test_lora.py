"""LoRA healing: lowers the loss, merges to a plain model of the pruned size, resumes bit-identically."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2LMHeadModel, LlamaForCausalLM

from shapprune.models import parameter_count
from shapprune.repair.lora import kd_loss, lora_heal, lora_targets, steps_for_tokens
from shapprune.scoring import window_nll
from shapprune.surgery import keep_layers
from tests.repair.conftest import tiny, tiny_arch

KEEP = [1, 1, 0, 0, 1, 1]
FAST = dict(batch_size=4, lr=1e-2)  # a tiny model needs a larger step than the default 3e-4 to move in 20 steps


class Interrupt(Exception):
    """Stands in for a killed run."""


def pruned_model(calibration) -> torch.nn.Module:
    return keep_layers(copy.deepcopy(calibration[0]), KEEP)


def test_targets_are_every_projection_of_the_decoder_layers() -> None:
    names = lora_targets(tiny())
    kinds = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert len(names) == 6 * 7 and {n.rsplit(".", 1)[1] for n in names} == kinds
    assert all(n.startswith("model.layers.") for n in names)  # not the LM head
    assert len(lora_targets(tiny_arch("gpt2"))) == 4 * 4  # Conv1D: c_attn, attn.c_proj, c_fc, mlp.c_proj


def test_steps_for_tokens() -> None:
    assert steps_for_tokens(1000, 8, 24) == 6 and steps_for_tokens(8 * 24, 8, 24) == 1


def test_lowers_loss_and_merges_to_the_pruned_size(calibration, tmp_path) -> None:
    full, fit, held = calibration
    pruned = pruned_model(calibration)
    before_fit, before_held = window_nll(pruned, fit).mean, window_nll(pruned, held).mean
    calls: list[tuple[int, int]] = []
    healed, report = lora_heal(
        copy.deepcopy(pruned),
        fit,
        steps=20,
        rng=np.random.default_rng(0),
        progress=lambda s, n, loss: calls.append((s, n)),
        **FAST,
    )
    assert type(healed) is LlamaForCausalLM and not any("lora" in k for k in healed.state_dict())
    assert parameter_count(healed) == parameter_count(pruned)
    assert window_nll(healed, fit).mean < before_fit - 0.3  # the training windows
    assert window_nll(healed, held).mean < before_held  # held-out windows from the same model (observed, not implied)
    assert calls == [(s, 20) for s in range(1, 21)] and len(report.losses) == 20
    assert report.tokens == 20 * 4 * 24 and report.steps_run == 20 and report.resumed_from == 0
    assert report.parameters_trained == 4 * 8 * (2 * (16 + 16) + 2 * (16 + 8) + 3 * (16 + 32))  # r (in + out) each
    healed.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = torch.as_tensor(held[:2])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, healed(input_ids=ids).logits, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(calibration) -> tuple[torch.nn.Module, list[float]]:
    """10 steps straight through, no checkpoints."""
    healed, report = lora_heal(
        pruned_model(calibration), calibration[1], steps=10, rng=np.random.default_rng(3), **FAST
    )
    return healed, report.losses


@pytest.mark.parametrize("stop_at", [6, 7])
def test_resume_gives_the_uninterrupted_weights(calibration, uninterrupted, tmp_path, stop_at: int) -> None:
    """Killed after ``stop_at`` steps (checkpoints every 3): the rerun starts after the last checkpoint (6)."""
    pruned, fit = pruned_model(calibration), calibration[1]
    straight, losses = uninterrupted

    def kill(step: int, total: int, loss: float) -> None:
        if step == stop_at:
            raise Interrupt

    run = dict(steps=10, checkpoint_dir=tmp_path, checkpoint_every=3, **FAST)
    with pytest.raises(Interrupt):
        lora_heal(copy.deepcopy(pruned), fit, rng=np.random.default_rng(3), progress=kill, **run)
    assert [p.name for p in tmp_path.iterdir()] == ["step_000006"]
    assert sorted(p.name for p in (tmp_path / "step_000006").iterdir()) == [
        "adapter.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]
    seen: list[int] = []
    resumed, again = lora_heal(
        copy.deepcopy(pruned), fit, rng=np.random.default_rng(3), progress=lambda s, n, loss: seen.append(s), **run
    )
    assert seen == list(range(7, 11)) and again.resumed_from == 6 and again.steps_run == 4
    assert again.losses == losses
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    finished, last = lora_heal(copy.deepcopy(pruned), fit, rng=np.random.default_rng(3), **run)  # nothing left
    assert last.steps_run == 0 and last.losses == losses
    for a, b in zip(finished.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_with_other_settings_is_refused(calibration, tmp_path) -> None:
    pruned, fit = pruned_model(calibration), calibration[1]
    lora_heal(copy.deepcopy(pruned), fit, steps=2, rng=np.random.default_rng(0), checkpoint_dir=tmp_path, **FAST)
    with pytest.raises(ValueError, match="other settings"):
        lora_heal(copy.deepcopy(pruned), fit, steps=4, rng=np.random.default_rng(1), checkpoint_dir=tmp_path, **FAST)


def test_conv1d_projections_gpt2() -> None:
    model = tiny_arch("gpt2")
    ids = np.random.default_rng(0).integers(0, 128, (8, 12))
    pruned = keep_layers(model, [1, 0, 1, 1])
    size = parameter_count(pruned)
    healed, report = lora_heal(pruned, ids, steps=3, rng=np.random.default_rng(0), batch_size=4)
    assert type(healed) is GPT2LMHeadModel and parameter_count(healed) == size and report.targets == 12


def test_kd_lowers_the_divergence_from_the_full_model(calibration) -> None:
    """Distillation moves the pruned model's next-token distribution towards the full model's."""
    full, fit, held = calibration
    pruned = pruned_model(calibration)

    def divergence(model: torch.nn.Module) -> float:
        ids = torch.as_tensor(held)
        with torch.no_grad():
            return float(kd_loss(model(input_ids=ids).logits, full(input_ids=ids).logits))

    before = divergence(pruned)
    healed, report = lora_heal(
        copy.deepcopy(pruned), fit, steps=20, rng=np.random.default_rng(0), loss="kd", teacher=full, **FAST
    )
    assert report.loss == "kd" and report.losses[-1] < report.losses[0]
    assert divergence(healed) < 0.8 * before  # on windows it did not train on


def test_kd_first_loss_is_the_divergence_of_the_first_batch(calibration) -> None:
    """Step 1's loss is the untrained student's KL on its batch: 0 for the full model as its own student."""
    full, fit, _ = calibration
    _, own = lora_heal(copy.deepcopy(full), fit, steps=1, rng=np.random.default_rng(0), loss="kd", teacher=full, **FAST)
    assert own.losses == [0.0]
    pruned = pruned_model(calibration)
    one = dict(steps=1, loss="kd", teacher=full, **FAST)
    _, cut = lora_heal(copy.deepcopy(pruned), fit, rng=np.random.default_rng(0), **one)
    rng = np.random.default_rng(0)
    rng.integers(2**63 - 1)  # the adapters' init seed comes first, then the batch order
    first = torch.as_tensor(fit)[rng.permutation(len(fit))[: FAST["batch_size"]]]
    with torch.no_grad():
        expected = float(kd_loss(pruned(input_ids=first).logits, full(input_ids=first).logits))
    assert cut.losses[0] == pytest.approx(expected, rel=1e-5)


def test_kd_loss_known_values() -> None:
    """KL of a distribution with itself is 0; of uniform against a point mass is log V."""
    logits = torch.randn(2, 3, 5)
    assert float(kd_loss(logits, logits)) == pytest.approx(0, abs=1e-6)
    point = torch.full((1, 1, 4), -1e4)
    point[..., 0] = 0.0
    assert float(kd_loss(torch.zeros(1, 1, 4), point)) == pytest.approx(np.log(4), abs=1e-5)


def test_kd_without_a_teacher_is_refused(calibration) -> None:
    with pytest.raises(ValueError, match="teacher="):
        lora_heal(pruned_model(calibration), calibration[1], steps=1, rng=np.random.default_rng(0), loss="kd")
