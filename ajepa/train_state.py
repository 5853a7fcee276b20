"""What the training loop mutates and what one step returns, importable by the loop and the run files alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ajepa.models import AudioJEPA

__all__ = ["StepOutput", "TrainState"]


@dataclass
class TrainState:
    """What the loop mutates. ``model`` is the bare AudioJEPA (checkpoints, EMA); ``ddp`` the DDP wrapper or
    the model itself; ``forward`` what the loss is computed with (``ddp``, possibly compiled)."""

    model: AudioJEPA
    ddp: nn.Module
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0


@dataclass
class StepOutput:
    """Device tensors of one optimiser step; read them (a GPU sync) only when logging."""

    loss: Tensor
    target_std: Tensor
    grad_norm: Tensor
    embeddings: Tensor
    sample: dict[str, Any]
    loss_terms: dict[str, Tensor] = field(default_factory=dict)
