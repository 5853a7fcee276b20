"""Log-mel spectrograms <-> sequences of time-frequency patch tokens.

A spectrogram ``(B, F, T)`` is zero-padded to ``(F_p * pf, T_p * pt)`` and cut into a grid of
``F_p x T_p`` patches of ``pf x pt`` (freq x time) cells, ``F_p = ceil(F / pf)``, ``T_p = ceil(T / pt)``.

Token order is **time-major**: the patch at grid cell ``(f, t)`` is token ``n = t * F_p + f``, so the
tokens of one time column are contiguous and the padded tail of a clip is a tail of the sequence.
Inside a token the patch is flattened **frequency-major**: ``patch[i_f, i_t]`` is element
``i_f * pt + i_t``. Equivalently, token ``n`` element ``k`` holds ``spec[f * pf + k // pt, t * pt + k % pt]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ajepa.errors import AudioInputError, ConfigError

__all__ = ["grid_shape", "patchify", "valid_tokens"]


def grid_shape(n_mels: int, num_frames: int, patch: tuple[int, int] = (16, 16)) -> tuple[int, int]:
    """Patch grid ``(F_p, T_p)`` of a ``(n_mels, num_frames)`` spectrogram; both axes rounded up."""
    pf, pt = _check_patch(patch)
    return math.ceil(n_mels / pf), math.ceil(num_frames / pt)


def patchify(spec: Tensor, patch: tuple[int, int] = (16, 16)) -> tuple[Tensor, tuple[int, int]]:
    """Cut ``(B, F, T)`` into tokens ``(B, F_p * T_p, pf * pt)`` in time-major order; also return ``(F_p, T_p)``."""
    if spec.ndim != 3:
        raise AudioInputError(f"patchify expects (B, F, T), got shape {tuple(spec.shape)}")
    pf, pt = _check_patch(patch)
    batch, n_mels, num_frames = spec.shape
    grid_f, grid_t = grid_shape(n_mels, num_frames, patch)
    spec = torch.nn.functional.pad(spec, (0, grid_t * pt - num_frames, 0, grid_f * pf - n_mels))
    tokens = (
        spec.reshape(batch, grid_f, pf, grid_t, pt)
        .permute(0, 3, 1, 2, 4)  # (B, T_p, F_p, pf, pt): time-major grid, freq-major patch
        .reshape(batch, grid_t * grid_f, pf * pt)
    )
    return tokens, (grid_f, grid_t)


def valid_tokens(frame_valid: Tensor, grid: tuple[int, int], patch: tuple[int, int] = (16, 16)) -> Tensor:
    """``(B, T)`` bool frame mask -> ``(B, F_p * T_p)`` bool token mask.

    A token is valid when its time column holds at least one valid frame; every frequency row of a
    column shares the column's validity. ``T`` may be shorter than ``T_p * pt`` (the padding is invalid).
    """
    _, pt = _check_patch(patch)
    grid_f, grid_t = grid
    if frame_valid.ndim != 2 or frame_valid.shape[1] > grid_t * pt:
        raise AudioInputError(
            f"valid_tokens expects (B, T) with T <= {grid_t * pt} for grid {grid}, got {tuple(frame_valid.shape)}"
        )
    padded = torch.nn.functional.pad(frame_valid.bool(), (0, grid_t * pt - frame_valid.shape[1]), value=False)
    columns = padded.reshape(padded.shape[0], grid_t, pt).any(dim=-1)  # (B, T_p)
    return columns.unsqueeze(-1).expand(-1, grid_t, grid_f).reshape(padded.shape[0], grid_t * grid_f)


def _check_patch(patch: tuple[int, int]) -> tuple[int, int]:
    pf, pt = (int(p) for p in patch)
    if pf < 1 or pt < 1:
        raise ConfigError(f"patch sizes must be positive, got {patch}")
    return pf, pt
