"""The MAE baseline objective: reconstruct the target blocks' per-patch normalised log-mel patches."""

from __future__ import annotations

from torch import Tensor

from ajepa.objectives.base import ObjectiveBase
from ajepa.objectives.losses import normalize_patches, regression_loss


class MAEObjective(ObjectiveBase):
    """Patch targets (Audio-MAE's normalised pixels) and the squared error. No target encoder, no parameters."""

    uses_target_encoder = False

    def output_dim(self, embed_dim: int, patch_dim: int) -> int:
        """The predictor (a decoder here) regresses patches."""
        return patch_dim

    def monitored(self, targets: Tensor, context: Tensor) -> Tensor:
        """What the collapse monitors watch: the context features ``(R, N_ctx, D)`` (the targets are patches)."""
        return context

    def target_tokens(self, tokens: Tensor, teacher: list[Tensor] | None, valid: Tensor | None) -> Tensor:
        """Each patch standardised by its own statistics ``(B, N, P)``."""
        return normalize_patches(tokens)

    def forward(self, pred: Tensor, targets: Tensor, weight: Tensor | None) -> Tensor:
        """``pred``, ``targets`` ``(R, K, N_tgt, P)``; ``weight (R, K, N_tgt)`` or None -> the scalar loss."""
        return regression_loss(pred, targets, "l2", weight)
