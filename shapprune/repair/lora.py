"""LoRA healing of a pruned model: train low-rank adapters on every projection of the decoder layers, then merge.

On token windows (int64 [n, T]), with one of two losses: ``ce``, the causal-LM loss on the windows' own
next tokens (the paper's healing), or ``kd``, distillation: the mean over tokens of the KL divergence
``KL(p_teacher || p_student)`` of the next-token distributions, the teacher being the full (unpruned) model,
so the pruned model learns to predict what the full one predicts rather than the calibration text itself.
Batches are drawn without replacement, epoch by epoch, from a
seeded ``np.random.Generator`` (which also seeds the adapters' initialisation); AdamW at a constant
learning rate (so a finished run can be extended by asking for more steps). The model is trained in
eval mode (no dropout anywhere), which keeps a run deterministic and resumable.

Checkpoints (every ``checkpoint_every`` steps and at the end) go to ``checkpoint_dir/step_XXXXXX/``:
``adapter.safetensors`` (the trainable weights), ``optimizer.safetensors`` (AdamW moments and step) and
``state.json`` (step, losses, the generator's state and the batch queue, the settings). A directory is
written as ``*.tmp`` and renamed when complete, so a killed run resumes from its last complete checkpoint,
does not redo those steps, and ends with the same weights as an uninterrupted run. Finally the adapters
are merged (``merge_and_unload``): the result is a plain transformers model with the pruned model's
parameter count.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from shapprune.checkpoint import fingerprint
from shapprune.repair.seams import layers_prefix
from shapprune.types import TokenWindows

Progress = Callable[[int, int, float], None]


@dataclass
class LoraReport:
    """What healing did: steps (in all, and run by this call), tokens, wall time, loss per step, trained size."""

    steps: int
    steps_run: int
    resumed_from: int
    tokens: int
    seconds: float
    parameters_trained: int
    targets: int
    loss: str = "ce"
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# State-space families whose fused CUDA kernels (mamba_ssm) read ``out_proj``'s weight directly, bypassing an
# adapter's forward; peft refuses LoRA there, so their LoRA trains the other projections. (peft refuses their
# ``conv1d`` too, an nn.Conv1d that is never a target here.)
SSM_TYPES = frozenset({"mamba", "mamba2", "falcon_mamba", "falcon_h1", "nemotron_h"})


def lora_targets(model: nn.Module) -> list[str]:
    """Full names of every nn.Linear (or GPT-2 Conv1D) projection inside the decoder layers (on a state-space
    model, all but ``out_proj``)."""
    prefix = layers_prefix(model) + "."
    ssm = getattr(getattr(model, "config", None), "model_type", None) in SSM_TYPES
    return [
        n
        for n, m in model.named_modules()
        if n.startswith(prefix) and isinstance(m, (nn.Linear, Conv1D)) and not (ssm and n.endswith(".out_proj"))
    ]


LOSSES = ("ce", "kd")


def kd_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of ``KL(softmax(teacher) || softmax(student))``; logits ``[b, T, V]`` -> scalar (nats)."""
    s = torch.log_softmax(student.float(), dim=-1).flatten(0, 1)  # [b*T, V]
    t = torch.log_softmax(teacher.float(), dim=-1).flatten(0, 1)  # [b*T, V]
    return torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean")


def steps_for_tokens(tokens: int, batch_size: int, seq_len: int) -> int:
    """Steps needed for a token budget (``steps x batch x seq_len >= tokens``)."""
    return math.ceil(tokens / (batch_size * seq_len))


class _Batches:
    """Window indices, ``batch_size`` per step, from successive permutations drawn from ``rng``."""

    def __init__(self, n: int, batch_size: int, rng: np.random.Generator) -> None:
        self.n, self.batch_size, self.rng = n, batch_size, rng
        self.queue: list[int] = []

    def next(self) -> np.ndarray:
        while len(self.queue) < self.batch_size:
            self.queue.extend(int(i) for i in self.rng.permutation(self.n))
        out, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        return np.array(out, dtype=np.int64)


def _init_adapters(model: nn.Module, seed: int) -> None:
    """peft's LoRA init (A: Kaiming uniform, B: 0) from a local generator instead of the global RNG."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if ".lora_A." in name:
            w = torch.empty(p.shape, dtype=torch.float32)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
            p.data.copy_(w)
        elif ".lora_B." in name:
            p.data.zero_()


def _latest(directory: Path) -> Path | None:
    done = sorted(p for p in directory.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    return next((p for p in reversed(done) if (p / "state.json").is_file()), None)


def _save(
    directory: Path,
    step: int,
    trained: dict[str, nn.Parameter],
    opt: torch.optim.Optimizer,
    state: dict,
) -> None:
    final = directory / f"step_{step:06d}"
    tmp = directory / f"step_{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({n: p.detach().contiguous().cpu() for n, p in trained.items()}, tmp / "adapter.safetensors")
    index = {id(p): n for n, p in trained.items()}
    names = [index[id(p)] for g in opt.param_groups for p in g["params"]]
    moments = {
        f"{names[i]}::{k}": v.detach().contiguous().cpu()
        for i, s in opt.state_dict()["state"].items()
        for k, v in s.items()
        if torch.is_tensor(v)
    }
    save_file(moments, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in directory.glob("step_*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _load(path: Path, trained: dict[str, nn.Parameter], opt: torch.optim.Optimizer) -> dict:
    state = json.loads((path / "state.json").read_text())
    weights = load_file(path / "adapter.safetensors")
    with torch.no_grad():
        for n, p in trained.items():
            p.copy_(weights[n])
    moments = load_file(path / "optimizer.safetensors")
    index = {id(p): n for n, p in trained.items()}
    names = [index[id(p)] for g in opt.param_groups for p in g["params"]]
    sd = opt.state_dict()
    sd["state"] = {}
    for i, name in enumerate(names):
        entries = {k.split("::", 1)[1]: v for k, v in moments.items() if k.split("::", 1)[0] == name}
        if entries:
            sd["state"][i] = entries
    opt.load_state_dict(sd)
    return state


def lora_heal(
    model: nn.Module,
    windows: TokenWindows,
    *,
    steps: int,
    rng: np.random.Generator,
    batch_size: int = 8,
    r: int = 8,
    alpha: int = 16,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
    loss: str = "ce",
    teacher: nn.Module | None = None,
) -> tuple[nn.Module, LoraReport]:
    """Train LoRA adapters for ``steps`` steps on ``windows``, merge them; returns ``(plain model, report)``.

    ``loss="kd"`` needs ``teacher`` (the full model, same tokenizer; it is only run forward, on its own
    device). ``rng`` must be freshly seeded the same way when resuming (its starting state is checked);
    ``progress`` is called after every step (and after that step's checkpoint, if any).
    """
    began = time.perf_counter()
    if loss not in LOSSES:
        raise ValueError(f"lora: loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if loss == "kd" and teacher is None:
        raise ValueError("lora: loss 'kd' distils from the full model; pass teacher=<the unpruned model>")
    if teacher is not None:
        teacher.eval()
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    windows = torch.as_tensor(np.asarray(windows), dtype=torch.long)  # [n, T]
    if windows.ndim != 2 or len(windows) == 0 or windows.shape[1] < 2:
        raise ValueError(f"lora: windows must be a non-empty int64 [n, T >= 2] array, got {tuple(windows.shape)}")
    targets = lora_targets(model)
    if not targets:
        raise ValueError(f"lora: no nn.Linear projections found inside the decoder layers of {type(model).__name__}")
    grads_before = {n: p.requires_grad for n, p in model.named_parameters()}
    settings = {
        "r": r,
        "alpha": alpha,
        "lr": lr,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "loss": loss,
        "targets": fingerprint(targets),
        "windows": fingerprint([np.ascontiguousarray(windows.numpy()).tobytes()]),
        "rng": json.dumps(rng.bit_generator.state),
    }
    init_seed = int(rng.integers(2**63 - 1))
    batches = _Batches(len(windows), batch_size, rng)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=targets,
        fan_in_fan_out=any(isinstance(model.get_submodule(t), Conv1D) for t in targets),
        bias="none",
    )
    peft_model = get_peft_model(model, config)
    _init_adapters(peft_model, init_seed)
    peft_model.eval()
    trained = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(trained.values(), lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    done = 0
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    latest = _latest(directory) if directory is not None else None
    if latest is not None:
        state = _load(latest, trained, opt)
        if state["settings"] != settings:
            changed = sorted(k for k in settings if state["settings"].get(k) != settings[k])
            raise ValueError(
                f"lora: checkpoint {latest} was made with other settings ({', '.join(changed)}); "
                "delete the checkpoint directory or restore those settings"
            )
        if state["step"] > steps:
            raise ValueError(f"lora: checkpoint {latest} is at step {state['step']}, past the {steps} steps asked for")
        done, losses = state["step"], state["losses"]
        rng.bit_generator.state = state["rng_state"]
        batches.queue = list(state["queue"])
    resumed_from = done
    for step in range(done + 1, steps + 1):
        ids = windows[batches.next()].to(device)  # [b, T]
        if loss == "kd":
            value = kd_loss(peft_model(input_ids=ids, use_cache=False).logits, _teacher_logits(teacher, ids))
        else:
            value = peft_model(input_ids=ids, labels=ids, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        losses.append(float(value.detach()))
        if directory is not None and (step % checkpoint_every == 0 or step == steps):
            state = {"settings": settings, "losses": losses, "rng_state": rng.bit_generator.state}
            _save(directory, step, trained, opt, {**state, "queue": batches.queue})
        if progress is not None:
            progress(step, steps, losses[-1])
    n_trained = sum(p.numel() for p in trained.values())
    merged = peft_model.merge_and_unload()
    for n, p in merged.named_parameters():
        p.requires_grad_(grads_before.get(n, True))
    merged.eval()
    report = LoraReport(
        steps=steps,
        steps_run=steps - resumed_from,
        resumed_from=resumed_from,
        tokens=steps * batch_size * windows.shape[1],
        seconds=time.perf_counter() - began,
        parameters_trained=n_trained,
        targets=len(targets),
        loss=loss,
        losses=losses,
    )
    return merged, report


@torch.no_grad()
def _teacher_logits(teacher: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The teacher's next-token logits ``[b, T, V]`` on ``ids`` ``[b, T]``, on the student's device."""
    own = next(teacher.parameters()).device
    return teacher(input_ids=ids.to(own), use_cache=False).logits.to(ids.device)
