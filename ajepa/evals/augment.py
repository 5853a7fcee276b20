"""On-the-fly augmentations for fine-tuning: waveform gain and time shift, SpecAugment masks, mixup, token dropping.

Pure functions of their inputs and a ``torch.Generator``, so a fine-tuning run is deterministic for its seed. None of
them moves audio into the zero-padding of a short clip or lets padding count as audio: the time shift rotates each
clip within its own real samples, SpecAugment masks only real frames, and token dropping keeps padded tokens out.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["drop_tokens", "mixup", "random_gain", "spec_augment", "time_shift"]


def random_gain(wav: Tensor, lengths: Tensor, max_db: float, gen: torch.Generator) -> Tensor:
    """``wav (B, N)`` scaled by a uniform gain in ``[-max_db, max_db]`` dB per clip, capped so no sample clips."""
    if max_db <= 0:
        return wav
    db = (torch.rand(wav.shape[0], generator=gen) * 2 - 1) * max_db
    gain = 10.0 ** (db / 20.0)
    peak = wav.abs().amax(dim=1).clamp(min=1e-8)
    gain = torch.minimum(gain.to(wav.device), 1.0 / peak)
    return wav * gain[:, None]


def time_shift(wav: Tensor, lengths: Tensor, gen: torch.Generator) -> Tensor:
    """Rotate each clip ``(B, N)`` by a random offset within its first ``lengths[b]`` samples (padding stays put)."""
    n = lengths.to(wav.device).clamp(min=1)[:, None]
    k = (torch.rand(wav.shape[0], generator=gen).to(wav.device)[:, None] * n).long()
    t = torch.arange(wav.shape[1], device=wav.device)[None, :]
    src = torch.where(t < n, (t - k) % n, t)  # one gather for the batch: sample t comes from t - k, wrapped
    return wav.gather(1, src)


def _spans(count: int, max_width: int, limit: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` random spans per row ``(B, count)`` (start, width), each inside ``[0, limit[b])``."""
    b = limit.shape[0]
    width = torch.minimum((torch.rand(b, count, generator=gen) * (max_width + 1)).long(), limit[:, None])
    start = (torch.rand(b, count, generator=gen) * (limit[:, None] - width + 1)).long()
    return start, width


def _covered(start: Tensor, width: Tensor, size: int) -> Tensor:
    """``(B, size)`` bool: positions inside any of the row's spans ``(B, count)``."""
    pos = torch.arange(size)[None, None, :]
    return ((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(1)


def spec_augment(spec: Tensor, valid_frames: Tensor, gen: torch.Generator, *, freq_masks: int = 2,
                 freq_width: int = 24, time_masks: int = 2, time_width: int = 20) -> Tensor:
    """SpecAugment on a log-mel ``(B, F, T)``: up to ``freq_width`` mel bins and ``time_width`` frames per mask,
    set to the clip's mean over its real frames. ``valid_frames (B, T)`` bool: masks fall on real frames only, and
    padded frames are left as they are (the encoder never counts them).

    torchaudio's ``mask_along_axis_iid`` draws from the global RNG and knows no padding, hence this version.
    """
    b, f, t = spec.shape
    valid = valid_frames.to(spec.device)
    n_real = valid.sum(1).cpu()
    fill = (spec * valid[:, None, :]).sum((1, 2)) / (n_real.to(spec.device).clamp(min=1) * f)
    freq = _covered(*_spans(freq_masks, freq_width, torch.full((b,), f), gen), f).to(spec.device)
    time = _covered(*_spans(time_masks, time_width, n_real, gen), t).to(spec.device)
    masked = (freq[:, :, None] | time[:, None, :]) & valid[:, None, :]
    return torch.where(masked, fill[:, None, None], spec)


def mixup(spec: Tensor, targets: Tensor, alpha: float, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Mix each clip with another of the batch: ``spec (B, F, T)``, soft ``targets (B, C)`` -> mixed ones and the
    permutation used. The weight is ``max(lam, 1 - lam)`` with ``lam ~ Beta(alpha, alpha)``, so the first clip
    dominates and its padding mask remains the right one to use. ``alpha <= 0`` returns the inputs."""
    if alpha <= 0 or spec.shape[0] < 2:
        return spec, targets, torch.arange(spec.shape[0])
    # torch.distributions takes no generator: numpy's Beta, seeded from gen, keeps the draw reproducible.
    lam = float(np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen))).beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)
    perm = torch.randperm(spec.shape[0], generator=gen)
    other = perm.to(spec.device)
    return lam * spec + (1 - lam) * spec[other], lam * targets + (1 - lam) * targets[other], perm


def drop_tokens(valid: Tensor, fraction: float, gen: torch.Generator) -> Tensor:
    """A-JEPA's regularised masking for fine-tuning: ``keep_idx (B, M)`` of the tokens to encode, dropping about
    ``fraction`` of each clip's valid tokens at random. ``valid (B, N)`` bool; every row keeps the same number
    ``M`` (the batch's smallest count of kept valid tokens, at least 1), and padded tokens are never kept."""
    b, n = valid.shape
    keep = torch.clamp((valid.sum(1).float() * (1.0 - fraction)).ceil().long(), min=1)
    m = int(keep.min())
    scores = torch.rand(b, n, generator=gen).to(valid.device)
    scores = scores.masked_fill(~valid, 2.0)  # invalid tokens sort last
    return scores.argsort(dim=1)[:, :m].sort(dim=1).values
