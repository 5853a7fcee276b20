"""VICReg's variance and covariance terms, the anti-collapse addition to either objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def variance_covariance(z: Tensor, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """VICReg's anti-collapse terms over a set of feature vectors ``z (M, D)``, ``M >= 2``, in fp32.

    ``variance``: mean over dimensions of ``relu(1 - std)``, which pushes every dimension to keep a unit spread
    across the set; ``covariance``: the sum of squared off-diagonal covariances divided by ``D``, which pushes the
    dimensions to decorrelate. Together they keep the effective rank from collapsing onto a few directions.
    """
    assert z.dim() == 2 and z.shape[0] >= 2, f"need (M >= 2, D) features, got {tuple(z.shape)}"
    z = z.float()
    z = z - z.mean(dim=0)
    std = torch.sqrt(z.var(dim=0) + eps)
    variance = F.relu(1.0 - std).mean()
    d = z.shape[1]
    cov = (z.T @ z) / (z.shape[0] - 1)
    off_diagonal = cov.pow(2).sum() - cov.diagonal().pow(2).sum()
    return variance, off_diagonal / d


class VarianceCovariance(nn.Module):
    """``weights · (variance, covariance)`` of the context tokens that hold audio. No parameters.

    ``forward(z (B, N_ctx, D), valid (B, N_ctx) | None) -> (loss, {"variance", "covariance"})``, the terms
    detached and unweighted. Padding tokens all encode the same silence; counting them would spend the term on
    spreading a constant input instead of the audio (FSDD clips are ~60% padding at 1 s crops). With fewer than
    two real tokens in the batch the terms are 0.
    """

    def __init__(self, variance_weight: float, covariance_weight: float) -> None:
        super().__init__()
        self.variance_weight, self.covariance_weight = variance_weight, covariance_weight

    def forward(self, z: Tensor, valid: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        features = z.reshape(-1, z.shape[-1])
        if valid is not None:
            features = features[valid.reshape(-1)]
        if features.shape[0] < 2:
            zero = torch.zeros((), device=z.device)
            return zero, {"variance": zero, "covariance": zero}
        var_term, cov_term = variance_covariance(features)
        loss = self.variance_weight * var_term + self.covariance_weight * cov_term
        return loss, {"variance": var_term.detach(), "covariance": cov_term.detach()}
