"""Int8 storage of exported weights: symmetric, one scale per output channel, dequantised to float32 on load.

A weight matrix (or conv kernel) of shape ``(C_out, ...)`` is stored as int8 values ``q`` with a float32 scale per
output channel, ``w ~= q * scale``, where ``scale = max|w_row| / 127``. Each row keeps its own range, so the
rounding error of a row is at most half a step of that row: for the default encoder the clip embeddings stay
within a cosine similarity of 0.99997 of its float16 export (ajepa/pretrained/default/README.md). Vectors (biases, norms) and
tensors with a single output channel are small and keep float16; non-floating tensors are kept as they are. Storage only: the model computes in float32.

The scale of tensor ``name`` is stored beside it as ``name + SCALE_SUFFIX``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SCALE_SUFFIX", "dequantize_int8", "quantize_int8"]

SCALE_SUFFIX = ".int8_scale"
_QMAX = 127  # symmetric: -127..127, so that negating a weight never overflows


def _quantizable(t: Tensor) -> bool:
    return t.ndim >= 2 and t.shape[0] > 1


def quantize_int8(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Int8 tensors with per-output-channel float32 scales for every weight of ``state`` with ``ndim >= 2`` and
    more than one output channel; every other floating tensor as float16, any other tensor unchanged. Pure:
    ``state`` is not modified, and every returned tensor is a new contiguous CPU tensor.

    Raises:
        ValueError: a key of ``state`` already ends with :data:`SCALE_SUFFIX`, a tensor is not finite, or a
            tensor is int8 already.
    """
    out: dict[str, Tensor] = {}
    for name, value in state.items():
        if name.endswith(SCALE_SUFFIX):
            raise ValueError(f"state key {name!r} ends with the reserved suffix {SCALE_SUFFIX!r}")
        if value.dtype == torch.int8:  # on load, int8 means "quantised": a plain int8 buffer would be misread
            raise ValueError(f"{name}: int8 tensors are reserved for quantised weights")
        if not value.is_floating_point():
            out[name] = value.detach().to("cpu").contiguous().clone()
            continue
        t = value.detach().to("cpu", torch.float32)
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}: cannot quantise a tensor with NaN or infinite values")
        if not _quantizable(t):
            out[name] = t.to(torch.float16).contiguous()
            continue
        rows = t.reshape(t.shape[0], -1)
        scale = rows.abs().amax(dim=1) / _QMAX
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row stores zeros exactly
        q = torch.round(rows / scale[:, None]).clamp_(-_QMAX, _QMAX).to(torch.int8)
        out[name] = q.reshape(t.shape).contiguous()
        out[name + SCALE_SUFFIX] = scale.contiguous()
    return out


def dequantize_int8(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Undo :func:`quantize_int8`: each int8 tensor times its scale, in float32; other tensors unchanged.

    Raises:
        ValueError: an int8 tensor without its scale, a scale without its tensor, or a scale of the wrong shape.
    """
    scales = {k[:-len(SCALE_SUFFIX)]: v for k, v in tensors.items() if k.endswith(SCALE_SUFFIX)}
    out: dict[str, Tensor] = {}
    for name, value in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            if name[:-len(SCALE_SUFFIX)] not in tensors:
                raise ValueError(f"{name}: a scale without its int8 tensor")
            continue
        if value.dtype != torch.int8:
            if name in scales:
                raise ValueError(f"{name}: has an int8 scale but is stored as {value.dtype}")
            out[name] = value
            continue
        scale = scales.get(name)
        if scale is None:
            raise ValueError(f"{name}: int8 tensor without its scale {name + SCALE_SUFFIX!r}")
        if value.ndim < 1 or scale.shape != (value.shape[0],) or not scale.is_floating_point():
            raise ValueError(f"{name}: scale of shape {tuple(scale.shape)} does not match a tensor of shape "
                             f"{tuple(value.shape)} (one float scale per output channel)")
        view = (-1,) + (1,) * (value.ndim - 1)
        out[name] = value.to(torch.float32) * scale.to(torch.float32).reshape(view)
    return out
