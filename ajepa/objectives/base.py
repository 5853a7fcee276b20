"""What every objective module shares: its config, and no parameters of its own."""

from __future__ import annotations

from torch import nn

from ajepa.objectives.config import ObjectiveConfig


class ObjectiveBase(nn.Module):
    """An objective: ``targets(tokens, grid, target_idx, target_encoder)``, ``forward(pred, targets, weight) -> loss``,
    ``output_dim(embed_dim, patch_dim)`` and ``monitored(targets, context)``; ``uses_target_encoder`` says whether
    the model builds an EMA target encoder for it."""

    uses_target_encoder: bool

    def __init__(self, cfg: ObjectiveConfig) -> None:
        super().__init__()
        self.cfg = cfg
