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
