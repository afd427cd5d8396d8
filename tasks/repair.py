"""Prefect tasks of the ``repair`` stage: rebuild the pruned model from the full one, repair it, save it."""

from __future__ import annotations

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from shapprune.config import Repair
from shapprune.models import MAP, load_model, parameter_count, save_model
from shapprune.repair.linear import linear_repair
from shapprune.repair.lora import lora_heal
from shapprune.streams import stream
from shapprune.surgery import keep_layers, num_layers
from tasks.shared.artifacts import read_repair_windows
from tasks.shared.paths import Paths
from tasks.shared.progress import StepProgress

WORK = ("data", ".repair_work")  # LoRA checkpoints: data/.repair_work/lora/


@task(name="repair-model", cache_policy=NO_CACHE)
def repair_model(paths: Paths, cfg: Repair, keep: np.ndarray, seed: int, device: str) -> dict:
    """The full model cut to ``keep``, linearly repaired and/or LoRA-healed per ``cfg``, saved to data/repaired."""
    windows, text = np.zeros((0, 0), np.int64), None  # text: e.g. "wiki_extracts 0.5 + coqa_stories 0.5"
    if cfg.method != "none":
        windows, text = read_repair_windows(paths.repair_windows, f"repair.method: {cfg.method}", "repair.method: none")
    model, tokenizer = load_model(str(paths.model), dtype=torch.float32, device=device)  # fp32 fit
    device = None if device == MAP else device  # a mapped model stays where accelerate put it
    info: dict = {"method": cfg.method, "windows": int(len(windows)), "text": text, "parameters_pruned": None}
    if cfg.linear:
        fit = windows[: cfg.linear_windows]  # [n, T]
        report = linear_repair(model, keep, fit, ridge=cfg.ridge, loss=cfg.loss, fit=cfg.fit, device=device)
        info["linear"] = report.to_dict()
    else:
        keep_layers(model, keep)
    info["parameters_pruned"] = parameter_count(model)
    if cfg.lora:
        teacher = load_model(str(paths.model), dtype=torch.float32, device=device)[0] if cfg.lora_loss == "kd" else None
        bar = StepProgress("repair-lora-progress", "LoRA healing steps", cfg.lora_steps, unit="steps")
        model, healed = lora_heal(
            model,
            windows,
            steps=cfg.lora_steps,
            rng=stream(seed, "lora"),
            batch_size=cfg.lora_batch_size,
            r=cfg.lora_r,
            alpha=cfg.lora_alpha,
            lr=cfg.lora_lr,
            checkpoint_dir=paths.root.joinpath(*WORK, "lora"),
            checkpoint_every=cfg.checkpoint_every,
            progress=lambda step, total, loss: bar.step(step, f"loss {loss:.3f}"),
            device=device,
            loss=cfg.lora_loss,
            teacher=teacher,
        )
        del teacher
        info["lora"] = healed.to_dict()
    save_model(model, tokenizer, paths.repaired)
    info |= {"parameters": parameter_count(model), "n_layers": num_layers(model)}
    info["parameters_added"] = info["parameters"] - info["parameters_pruned"]
    return info
