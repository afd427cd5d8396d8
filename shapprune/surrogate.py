"""The paper's surrogate: an MLP ``L -> hL -> 1`` (CELU, sigmoid output) trained with MSE on mask -> utility.

Weights are initialised and batches shuffled from an explicit ``torch.Generator`` (no global seeding).
Saved as safetensors plus a JSON file with the architecture, so no pickles are involved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from shapprune.types import Mask, Utility


@dataclass(frozen=True)
class SurrogateSpec:
    """Architecture of the surrogate (all that is needed to rebuild it)."""

    n_layers: int
    hidden_mult: float = 2.0
    depth: int = 1
    output: str = "sigmoid"  # sigmoid (utilities in (0, 1)) or linear


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation recipe; the defaults are the paper's (SGD, momentum 0.9, lr 0.008, StepLR 100/0.1)."""

    optimizer: str = "sgd"
    lr: float = 0.008
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 300
    batch_size: int = 300
    step_size: int = 100
    gamma: float = 0.1


class MLPSurrogate(nn.Module):
    """mask ``float[n, L]`` -> predicted utility ``float[n]``."""

    def __init__(self, spec: SurrogateSpec, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.spec = spec
        width = max(1, int(round(spec.hidden_mult * spec.n_layers)))
        layers: list[nn.Module] = []
        fan_in = spec.n_layers
        for _ in range(spec.depth):
            layers += [nn.Linear(fan_in, width), nn.CELU()]
            fan_in = width
        layers.append(nn.Linear(fan_in, 1))
        if spec.output == "sigmoid":
            layers.append(nn.Sigmoid())
        elif spec.output != "linear":
            raise ValueError(f"fit_surrogate.output: unknown output '{spec.output}'; use sigmoid or linear")
        self.net = nn.Sequential(*layers)
        for module in self.net:
            if isinstance(module, nn.Linear):  # PyTorch's default init, drawn from our generator
                bound = 1.0 / math.sqrt(module.in_features)
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    @torch.no_grad()
    def predict(self, masks: Mask, batch_size: int = 65536) -> Utility:
        """Predicted utilities for ``bool[n, L]`` masks."""
        if masks.shape[-1] != self.spec.n_layers:
            raise ValueError(
                f"surrogate was trained for {self.spec.n_layers} layers but masks have {masks.shape[-1]}; "
                "refit the surrogate for this model"
            )
        out = np.empty(len(masks))
        for start in range(0, len(masks), batch_size):
            x = torch.as_tensor(masks[start : start + batch_size], dtype=torch.float32)
            out[start : start + batch_size] = self(x).double().numpy()
        return out

    def save(self, directory: str | Path, extra: dict | None = None) -> None:
        """Write ``surrogate.safetensors`` and ``surrogate.json`` into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, out / "surrogate.safetensors")
        meta = {"spec": asdict(self.spec), **(extra or {})}
        (out / "surrogate.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> MLPSurrogate:
        """Rebuild a surrogate saved by :meth:`save`."""
        path = Path(directory)
        meta = json.loads((path / "surrogate.json").read_text())
        model = cls(SurrogateSpec(**meta["spec"]))
        model.load_state_dict(load_file(path / "surrogate.safetensors"))
        return model.eval()


def mlp_specs(n_layers: int, options: dict) -> tuple[SurrogateSpec, TrainSpec]:
    """Split MLP options (``FitSurrogate.mlp_options()``) into the architecture and the training recipe."""
    arch = {k: options[k] for k in ("hidden_mult", "depth", "output") if k in options}
    train = {k: v for k, v in options.items() if k not in arch}
    return SurrogateSpec(n_layers, **arch), TrainSpec(**train)


def fit_mlp(
    masks: Mask,
    utilities: Utility,
    spec: SurrogateSpec,
    train: TrainSpec,
    seed: int,
    on_epoch: Callable[[int], None] | None = None,
) -> tuple[MLPSurrogate, list[float]]:
    """Fit the surrogate by minibatch MSE; returns the model and the per-epoch mean training loss.

    ``on_epoch(n)`` is called after the n-th epoch (1-based), e.g. for progress or crash tests.
    """
    gen = torch.Generator().manual_seed(seed)
    model = MLPSurrogate(spec, gen)
    x = torch.as_tensor(masks, dtype=torch.float32)  # [n, L]
    y = torch.as_tensor(utilities, dtype=torch.float32)  # [n]
    if train.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
        )
    elif train.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    else:
        raise ValueError(f"fit_surrogate.optimizer: unknown optimizer '{train.optimizer}'; use sgd or adam")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=train.step_size, gamma=train.gamma)
    loss_fn = nn.MSELoss(reduction="sum")
    history = []
    model.train()
    for _ in range(train.epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), train.batch_size):
            idx = order[start : start + train.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            (loss / len(idx)).backward()
            opt.step()
            total += loss.item()
        sched.step()
        history.append(total / max(1, len(x)))
        if on_epoch is not None:
            on_epoch(len(history))
    return model.eval(), history


def fidelity(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """R², Spearman, Pearson and RMSE of predictions against true utilities."""
    from scipy import stats  # here, not at the top: 1-2 s of every stage's start-up

    if len(true) < 3:
        return {"r2": float("nan"), "spearman": float("nan"), "pearson": float("nan"), "rmse": float("nan")}
    resid = true - pred
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else float("nan")
    return {
        "r2": r2,
        "spearman": float(stats.spearmanr(pred, true).statistic),
        "pearson": float(stats.pearsonr(pred, true).statistic),
        "rmse": float(np.sqrt(np.mean(resid**2))),
    }
