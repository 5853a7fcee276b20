"""The optimiser and its per-step hyper-parameters (learning rate, weight decay, EMA momentum)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ajepa.training.config import OptimConfig
from ajepa.training.model import AudioJEPA
from ajepa.training.schedules import RAMPS, linear_schedule, warmup_cosine

__all__ = ["StepHyper", "apply_hyperparams", "build_optimizer", "hyperparams_at"]


def build_optimizer(model: AudioJEPA, optim: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, decay and no-decay groups; fused kernels on CUDA by default."""
    fused = device.type == "cuda" if optim.fused == "auto" else bool(optim.fused)
    return torch.optim.AdamW(model.param_groups(optim.weight_decay), lr=optim.start_lr, betas=optim.betas,
                             eps=optim.eps, fused=fused or None)


@dataclass(frozen=True)
class StepHyper:
    """The scheduled hyper-parameters of one optimiser step."""

    lr: float
    weight_decay: float
    momentum: float


def hyperparams_at(step: int, optim: OptimConfig, max_steps: int) -> StepHyper:
    """Learning rate (warm-up + cosine), weight decay (linear) and EMA momentum for 0-based ``step``.

    The momentum follows ``optim.ema_schedule``: ``linear`` (I-JEPA) or ``cosine`` (BYOL), which holds the
    momentum near its start for longer and eases into the end value; it starts at
    :meth:`OptimConfig.start_momentum` (``ema_horizon`` ties it to the run's length).
    """
    return StepHyper(
        lr=warmup_cosine(step, max_steps, optim.warmup(max_steps), optim.lr, optim.min_lr, optim.start_lr),
        weight_decay=linear_schedule(step, max_steps, optim.weight_decay, optim.final_weight_decay),
        momentum=RAMPS[optim.ema_schedule](step, max_steps, optim.start_momentum(max_steps),
                                           optim.final_ema_momentum),
    )


def apply_hyperparams(optimizer: torch.optim.Optimizer, hp: StepHyper) -> None:
    """Set this step's lr on every group and its weight decay on the decay group (norms and biases keep 0)."""
    for group in optimizer.param_groups:
        group["lr"] = hp.lr
        if group.get("name") == "decay":
            group["weight_decay"] = hp.weight_decay
