"""Waveforms -> patch tokens, the one path that training, embedding and the baselines share.

Training crops, embedding windows and padding masks are all computed here, so the three cannot drift apart in how
a sample count becomes frames, frames become patch columns, or padding becomes invalid tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ajepa.features.logmel import LogMelFrontend
from ajepa.features.patches import grid_shape, patchify, valid_tokens


@dataclass
class TokenizedAudio:
    """One batch of tokenised clips.

    Attributes:
        spec: ``(B, F, T)`` float32 log-mel.
        tokens: ``(B, F_p * T_p, pf * pt)`` patch vectors in time-major order (``n = t * F_p + f``).
        grid: ``(F_p, T_p)``.
        valid: ``(B, F_p * T_p)`` bool, True where a token's time column holds real audio; None without lengths.
    """

    spec: Tensor
    tokens: Tensor
    grid: tuple[int, int]
    valid: Tensor | None


class AudioTokenizer:
    """A :class:`LogMelFrontend` and a patch shape: ``tokenizer(wav (B, N), lengths (B,) | None) -> TokenizedAudio``.

    The log-mel always runs in float32, even under autocast: a log of bf16 energies would lose most of the
    dynamic range. ``lengths`` counts each clip's real samples (the rest is zero-padding); a token is valid when
    its time column holds at least one frame of real audio (:func:`ajepa.features.valid_tokens`).
    """

    def __init__(self, frontend: LogMelFrontend, patch: tuple[int, int]) -> None:
        self.frontend = frontend
        self.patch: tuple[int, int] = (int(patch[0]), int(patch[1]))
        # The front end's own integer rounding (Kaldi's), so window starts land exactly on frame boundaries.
        self.win_samples = frontend.win_length
        self.hop_samples = frontend.hop_length
        self.column_samples = self.patch[1] * self.hop_samples
        self.sample_rate = int(frontend.cfg.sample_rate)

    def grid(self, num_samples: int) -> tuple[int, int]:
        """``(F_p, T_p)`` of a clip of ``num_samples`` samples."""
        return grid_shape(self.frontend.cfg.n_mels, self.frontend.num_frames(num_samples), self.patch)

    def column_centres(self, cols: Tensor) -> Tensor:
        """Centres in seconds (float64) of patch columns ``cols``: Kaldi snip-edges framing puts frame ``k`` at
        samples ``[k * hop, k * hop + win)``, and a column is ``patch[1]`` frames."""
        pt = self.patch[1]
        centre_samples = (cols.double() * pt + (pt - 1) / 2) * self.hop_samples + self.win_samples / 2
        return centre_samples / self.sample_rate

    def spectrogram(self, wav: Tensor) -> Tensor:
        """``wav (B, N)`` -> the float32 log-mel ``(B, F, T)`` (what :meth:`from_spec` takes, e.g. augmented)."""
        with torch.autocast(wav.device.type, enabled=False):
            return self.frontend(wav.float())

    def __call__(self, wav: Tensor, lengths: Tensor | None = None) -> TokenizedAudio:
        return self.from_spec(self.spectrogram(wav), lengths)

    def from_spec(self, spec: Tensor, lengths: Tensor | None = None) -> TokenizedAudio:
        """Tokens of a log-mel ``(B, F, T)`` computed by :meth:`spectrogram`; ``lengths`` in samples as above."""
        tokens, grid = patchify(spec, self.patch)
        valid = None
        if lengths is not None:
            valid = valid_tokens(self.frontend.valid_frames(lengths.to(spec.device), spec.shape[-1]), grid, self.patch)
        return TokenizedAudio(spec, tokens, grid, valid)
