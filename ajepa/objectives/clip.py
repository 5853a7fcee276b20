"""EAT's utterance-level term: predict the target encoder's mean over the whole clip from the context alone."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ajepa.models.vit import LN_EPS, init_vit_weights
from ajepa.objectives.losses import regression_loss


def masked_mean(x: Tensor, valid: Tensor | None) -> Tensor:
    """Mean over tokens ``x (B, N, D)`` that ``valid (B, N)`` selects (all when None) -> ``(B, D)``."""
    if valid is None:
        return x.mean(dim=1)
    w = valid.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


class ClipPrediction(nn.Module):
    """A linear head on the mean of the context tokens regresses the layer-normed mean of the target encoder's
    tokens over the whole clip (EAT's utterance-frame objective, Chen et al. 2024). The patch targets ask what is
    where; this asks what the clip is, from a part of it, which is what a clip-level probe reads.

    ``forward(context (B, N_ctx, D), context_valid (B, N_ctx) | None, dense_targets (B, N, D),
    valid (B, N) | None) -> scalar loss``; ``dense_targets`` come from the target encoder under ``no_grad``.
    """

    def __init__(self, embed_dim: int, loss: str) -> None:
        super().__init__()
        self.loss = loss
        self.head = nn.Linear(embed_dim, embed_dim)
        self.apply(init_vit_weights)

    def forward(self, context: Tensor, context_valid: Tensor | None, dense_targets: Tensor,
                valid: Tensor | None) -> Tensor:
        pred = self.head(masked_mean(context, context_valid))
        target = masked_mean(dense_targets, valid)
        target = F.layer_norm(target, target.shape[-1:], eps=LN_EPS)
        return regression_loss(pred, target, self.loss)
