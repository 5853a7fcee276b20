"""I-JEPA's objective: regress the EMA target encoder's (layer-normed) features of the target blocks."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ajepa.models.vit import ViTEncoder, apply_masks
from ajepa.objectives.base import ObjectiveBase
from ajepa.objectives.losses import regression_loss


class JEPAObjective(ObjectiveBase):
    """Targets from the target encoder, and the loss of the predictions against them. No parameters."""

    uses_target_encoder = True

    def output_dim(self, embed_dim: int, patch_dim: int) -> int:
        """The predictor regresses encoder features."""
        return embed_dim

    def monitored(self, targets: Tensor, context: Tensor) -> Tensor:
        """What the collapse monitors watch: the targets ``(B, K, N_tgt, D)``, the representation being learned."""
        return targets

    def targets(self, tokens: Tensor, grid: tuple[int, int], target_idx: Tensor,
                target_encoder: ViTEncoder | None) -> Tensor:
        """``tokens (B, N, P)``, ``target_idx (B, K, N_tgt)`` -> ``(B, K, N_tgt, D)``; call under ``no_grad``."""
        h = target_encoder.forward_layers(tokens, grid, self.cfg.target_layers)
        h = apply_masks(h, target_idx)
        return F.layer_norm(h, h.shape[-1:]) if self.cfg.target_layernorm else h

    def forward(self, pred: Tensor, targets: Tensor, weight: Tensor | None) -> Tensor:
        """``pred``, ``targets`` ``(B, K, N_tgt, D)``; ``weight (B, K, N_tgt)`` or None -> the scalar loss."""
        return regression_loss(pred, targets, self.cfg.loss, weight)
