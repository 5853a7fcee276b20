"""I-JEPA's objective: regress the EMA target encoder's (layer-normed) features of the target blocks."""

from __future__ import annotations

from functools import reduce

import torch
import torch.nn.functional as F
from torch import Tensor

from ajepa.objectives.base import ObjectiveBase, top_layers
from ajepa.objectives.losses import centre_per_position, regression_loss


class JEPAObjective(ObjectiveBase):
    """Targets from the target encoder's last ``target_layers`` normalised hidden states, and the loss of the
    predictions against them. No parameters."""

    uses_target_encoder = True
    teacher_norm = True

    def teacher_layers(self, depth: int) -> list[int]:
        """The last ``target_layers`` hidden states (the patch embedding counts as one)."""
        return top_layers(self.cfg.target_layers, depth)

    def output_dim(self, embed_dim: int, patch_dim: int) -> int:
        """The predictor regresses encoder features."""
        return embed_dim

    def target_tokens(self, tokens: Tensor, teacher: list[Tensor] | None, valid: Tensor | None) -> Tensor:
        """The mean of the teacher's normalised states ``(B, N, D)``, layer-normed again when ``target_layernorm``."""
        h = reduce(torch.add, teacher) / len(teacher)
        h = F.layer_norm(h, h.shape[-1:]) if self.cfg.target_layernorm else h
        return centre_per_position(h, valid) if self.cfg.position_centring else h

    def forward(self, pred: Tensor, targets: Tensor, weight: Tensor | None) -> Tensor:
        """``pred``, ``targets`` ``(R, K, N_tgt, D)``; ``weight (R, K, N_tgt)`` or None -> the scalar loss."""
        return regression_loss(pred, targets, self.cfg.loss, weight)
