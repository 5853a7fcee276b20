"""The MAE baseline objective: reconstruct the target blocks' per-patch normalised log-mel patches."""

from __future__ import annotations

from torch import Tensor

from ajepa.models.vit import ViTEncoder, apply_masks
from ajepa.objectives.base import ObjectiveBase
from ajepa.objectives.losses import normalize_patches, regression_loss


class MAEObjective(ObjectiveBase):
    """Patch targets (Audio-MAE's normalised pixels) and the squared error. No target encoder, no parameters."""

    uses_target_encoder = False

    def output_dim(self, embed_dim: int, patch_dim: int) -> int:
        """The predictor (a decoder here) regresses patches."""
        return patch_dim

    def monitored(self, targets: Tensor, context: Tensor) -> Tensor:
        """What the collapse monitors watch: the context features ``(B, N_ctx, D)`` (the targets are patches)."""
        return context

    def targets(self, tokens: Tensor, grid: tuple[int, int], target_idx: Tensor,
                target_encoder: ViTEncoder | None) -> Tensor:
        """``tokens (B, N, P)``, ``target_idx (B, K, N_tgt)`` -> ``(B, K, N_tgt, P)``."""
        return normalize_patches(apply_masks(tokens, target_idx))

    def forward(self, pred: Tensor, targets: Tensor, weight: Tensor | None) -> Tensor:
        """``pred``, ``targets`` ``(B, K, N_tgt, P)``; ``weight (B, K, N_tgt)`` or None -> the scalar loss."""
        return regression_loss(pred, targets, "l2", weight)
