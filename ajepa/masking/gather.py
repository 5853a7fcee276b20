"""Gathering the tokens a mask selects: the one indexing primitive of encoders, predictors and objectives."""

from __future__ import annotations

import torch
from torch import Tensor

from ajepa.errors import ConfigError

__all__ = ["apply_masks"]


def apply_masks(x: Tensor, idx: Tensor) -> Tensor:
    """Gather tokens: ``x (B, N, D)`` by ``idx (B, ...)`` int64 -> ``(B, ..., D)``.

    One ``torch.gather`` on an expanded (stride-0, copy-free) index; its backward is a scatter-add.
    """
    if x.dim() != 3:
        raise ConfigError(f"apply_masks expects x of shape (B, N, D), got {tuple(x.shape)}")
    if idx.dim() < 2 or idx.shape[0] != x.shape[0]:
        raise ConfigError(f"apply_masks index of shape {tuple(idx.shape)} does not match batch {x.shape[0]}")
    b, d = x.shape[0], x.shape[-1]
    flat = idx.reshape(b, -1, 1).expand(-1, -1, d)
    return torch.gather(x, 1, flat).reshape(*idx.shape, d)
