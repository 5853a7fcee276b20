"""Clip mixing for pre-training: another clip of the batch added under a clip at a random signal-to-noise ratio.

A corpus of single-source recordings (isolated keywords, digits) never shows the encoder two sounds at once.
Mixing each clip with a neighbour of its batch, as BYOL-A and M2D-X mix in background audio, is the cheapest way
to widen what such a corpus covers. The mix is a pure function of ``(seed, batch_index, rank)``, like the masks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ajepa.errors import ConfigError
from ajepa.seeding import seed_from

__all__ = ["ClipMixer", "check_mix", "mix_clips"]

_MIX_SALT = 0x313C  # keeps the mixing stream apart from the masks' stream of the same batch


def check_mix(prob: float, snr_db: tuple[float, float]) -> None:
    """Raise :class:`ConfigError` unless ``0 <= prob <= 1`` and ``snr_db`` is a ``(low, high)`` range."""
    if not 0.0 <= prob <= 1.0:
        raise ConfigError(f"data.mix_prob must be in [0, 1], got {prob}")
    if len(snr_db) != 2 or snr_db[0] > snr_db[1]:
        raise ConfigError(f"data.mix_snr_db must be (low, high) with low <= high, got {snr_db}")


def mix_clips(wav: Tensor, lengths: Tensor, generator: torch.Generator, prob: float,
              snr_db: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """Add to each clip, with probability ``prob``, the previous clip of the batch scaled to an SNR from ``snr_db``.

    Args:
        wav: ``(B, N)`` waveforms, zero-padded at the end.
        lengths: ``(B,)`` real samples of each clip; the SNR is measured over them, not over the padding.
        generator: the batch's random stream. The same number of draws is made whatever the data, so one silent
            clip does not shift the mixes of the batches after it.
        prob: the fraction of clips that get a partner (``0`` returns the inputs).
        snr_db: ``(low, high)`` uniform range of the clip's power over its partner's, in dB.

    Returns:
        ``(wav (B, N), lengths (B,))``: new tensors; a mixed clip's length covers both of its sources. A clip or
        partner that is silent is left as it is, since no gain gives it an SNR.
    """
    batch = wav.shape[0]
    chosen = torch.rand(batch, generator=generator) < prob
    snr = torch.empty(batch, dtype=torch.float64).uniform_(snr_db[0], snr_db[1], generator=generator)
    if batch < 2 or prob <= 0:
        return wav.clone(), lengths.clone()
    partner, partner_len = torch.roll(wav, 1, 0), torch.roll(lengths, 1, 0)
    power = wav.double().pow(2).sum(1) / lengths.clamp(min=1)
    partner_power = partner.double().pow(2).sum(1) / partner_len.clamp(min=1)
    usable = chosen & (power > 0) & (partner_power > 0)
    gain = torch.sqrt(power / (partner_power.clamp(min=1e-30) * 10.0 ** (snr / 10.0)))
    gain = torch.where(usable, gain, torch.zeros_like(gain)).to(wav.dtype)
    mixed = wav + gain[:, None] * partner
    return mixed, torch.where(usable, torch.maximum(lengths, partner_len), lengths)


class ClipMixer:
    """Mixes the clips of a collated training batch (``data.mix_prob``, ``data.mix_snr_db``) in place of its
    ``"wav"`` and ``"lengths"``; :class:`ajepa.data.loader.RankMaskCollate` calls it.

    Partners come from the same rank's batch, so a W-process run mixes differently from one process with W times
    the batch (the masks, drawn for the global batch, do not).
    """

    def __init__(self, prob: float, snr_db: tuple[float, float], seed: int) -> None:
        check_mix(prob, snr_db)
        self.prob, self.snr_db, self.seed = float(prob), (float(snr_db[0]), float(snr_db[1])), int(seed)
        seed_from(self.seed)  # reject a negative seed now, not in a worker

    def __call__(self, batch: dict, rank: int = 0) -> dict:
        """Replace ``batch["wav"]`` and ``batch["lengths"]`` with their mixes; returns ``batch``."""
        generator = torch.Generator().manual_seed(seed_from(self.seed, int(batch["batch_index"]), rank, _MIX_SALT,
                                                            bits=64))
        batch["wav"], batch["lengths"] = mix_clips(batch["wav"], batch["lengths"], generator, self.prob, self.snr_db)
        return batch
