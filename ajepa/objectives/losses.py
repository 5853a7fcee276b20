"""The regression losses the objectives share, computed in fp32 so mixed precision cannot underflow them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_LOSSES = {"smooth_l1": F.smooth_l1_loss, "l2": F.mse_loss, "l1": F.l1_loss}


def regression_loss(pred: Tensor, target: Tensor, kind: str, weight: Tensor | None = None) -> Tensor:
    """Mean element-wise loss over ``(..., D)``.

    ``weight`` (``pred.shape[:-1]``, bool or float) restricts the mean to the tokens it selects, e.g. to keep
    zero-padding out of the objective; ``None`` averages over every token.
    """
    pred, target = pred.float(), target.float()
    fn = _LOSSES[kind]
    if weight is None:
        return fn(pred, target)
    per_token = fn(pred, target, reduction="none").mean(-1)
    weight = weight.to(per_token.dtype)
    return (per_token * weight).sum() / weight.sum().clamp(min=1.0)


def normalize_patches(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """Standardise each patch vector by its own mean and (population) variance, Audio-MAE style. ``(..., P)``."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True, unbiased=False)
    return (patches - mean) * torch.rsqrt(var + eps)


def instance_norm(h: Tensor, valid: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Standardise each clip's channels over its tokens: ``h (B, N, D)``, statistics over the tokens ``valid
    (B, N)`` selects (all when None), so that zero-padding does not shift them. data2vec's target normalisation."""
    if valid is None:
        return F.instance_norm(h.transpose(1, 2), eps=eps).transpose(1, 2)
    w = valid.to(h.dtype).unsqueeze(-1)  # (B, N, 1)
    count = w.sum(1, keepdim=True).clamp(min=1.0)
    mean = (h * w).sum(1, keepdim=True) / count
    var = ((h - mean).pow(2) * w).sum(1, keepdim=True) / count
    return (h - mean) * torch.rsqrt(var + eps)


def centre_per_position(h: Tensor, valid: Tensor | None = None) -> Tensor:
    """Subtract from ``h (B, N, D)`` its mean over the batch at each token position (over the clips whose token
    there is ``valid``): what a predictor told only the position could fit is taken out of the targets."""
    if valid is None:
        return h - h.mean(0, keepdim=True)
    w = valid.to(h.dtype).unsqueeze(-1)
    mean = (h * w).sum(0, keepdim=True) / w.sum(0, keepdim=True).clamp(min=1.0)
    return h - mean
