"""What the training loop mutates and what one step returns, importable by the loop and the run files alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ajepa.training.model import AudioJEPA

__all__ = ["StepOutput", "TrainState"]


@dataclass
class TrainState:
    """What the loop mutates. ``model`` is the bare AudioJEPA (checkpoints, EMA); ``forward`` what the loss is
    computed with: the model itself (the default, ``None``), or its DDP wrapper, possibly compiled (whose
    ``no_sync`` gradient accumulation uses)."""

    model: AudioJEPA
    optimizer: torch.optim.Optimizer
    forward: nn.Module | None = None
    step: int = 0

    @property
    def loss_module(self) -> nn.Module:
        """The module the loss is computed with."""
        return self.model if self.forward is None else self.forward


@dataclass
class StepOutput:
    """Device tensors of one optimiser step; read them (a GPU sync) only when logging."""

    loss: Tensor
    target_std: Tensor
    grad_norm: Tensor
    embeddings: Tensor
    sample: dict[str, Any]
    loss_terms: dict[str, Tensor] = field(default_factory=dict)
