"""On-the-fly augmentations for fine-tuning: waveform gain and time shift, SpecAugment masks, mixup, token dropping.

Pure functions of their inputs and a ``torch.Generator``, so a fine-tuning run is deterministic for its seed. None of
them moves audio into the zero-padding of a short clip or lets padding count as audio: the time shift rotates each
clip within its own real samples, SpecAugment masks only real frames, and token dropping keeps padded tokens out.
"""

from __future__ import annotations

import math

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
    out = wav.clone()
    for b in range(wav.shape[0]):
        n = int(lengths[b])
        if n > 1:
            k = int(torch.randint(n, (1,), generator=gen))
            out[b, :n] = torch.roll(wav[b, :n], k)
    return out


def spec_augment(spec: Tensor, valid_frames: Tensor, gen: torch.Generator, *, freq_masks: int = 2,
                 freq_width: int = 24, time_masks: int = 2, time_width: int = 20) -> Tensor:
    """SpecAugment on a log-mel ``(B, F, T)``: up to ``freq_width`` mel bins and ``time_width`` frames per mask,
    set to the clip's mean over its real frames. ``valid_frames (B, T)`` bool: masks fall on real frames only, and
    padded frames are left as they are (the encoder never counts them)."""
    out = spec.clone()
    b, f, t = spec.shape
    for i in range(b):
        n = int(valid_frames[i].sum())
        if n == 0:
            continue
        fill = spec[i][:, valid_frames[i]].mean()
        for _ in range(freq_masks):
            w = int(torch.randint(freq_width + 1, (1,), generator=gen))
            start = int(torch.randint(max(1, f - w + 1), (1,), generator=gen))
            out[i, start:start + w, :n] = fill
        for _ in range(time_masks):
            w = min(int(torch.randint(time_width + 1, (1,), generator=gen)), n)
            start = int(torch.randint(max(1, n - w + 1), (1,), generator=gen))
            out[i, :, start:start + w] = fill
    return out


def mixup(spec: Tensor, targets: Tensor, alpha: float, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Mix each clip with another of the batch: ``spec (B, F, T)``, soft ``targets (B, C)`` -> mixed ones and the
    permutation used. The weight is ``max(lam, 1 - lam)`` with ``lam ~ Beta(alpha, alpha)``, so the first clip
    dominates and its padding mask remains the right one to use. ``alpha <= 0`` returns the inputs."""
    if alpha <= 0 or spec.shape[0] < 2:
        return spec, targets, torch.arange(spec.shape[0])
    # torch.distributions takes no generator: the Beta draw is made from gen's uniforms and normals instead.
    lam = _beta_sample(alpha, gen)
    lam = max(lam, 1.0 - lam)
    perm = torch.randperm(spec.shape[0], generator=gen)
    other = perm.to(spec.device)
    return lam * spec + (1 - lam) * spec[other], lam * targets + (1 - lam) * targets[other], perm


def _beta_sample(alpha: float, gen: torch.Generator) -> float:
    """One ``Beta(alpha, alpha)`` draw from ``gen``: ``X / (X + Y)`` of two ``Gamma(alpha)`` draws."""
    x, y = _gamma(alpha, gen), _gamma(alpha, gen)
    return x / (x + y) if x + y > 0 else 0.5


def _gamma(shape: float, gen: torch.Generator) -> float:
    """Marsaglia-Tsang Gamma(shape, 1) from ``gen`` (with the shape < 1 boost)."""
    boost = 1.0
    if shape < 1.0:
        boost = float(torch.rand(1, generator=gen)) ** (1.0 / shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = float(torch.randn(1, generator=gen))
        v = (1.0 + c * x) ** 3
        if v <= 0:
            continue
        u = float(torch.rand(1, generator=gen))
        if math.log(max(u, 1e-300)) < 0.5 * x * x + d - d * v + d * math.log(v):
            return d * v * boost


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
