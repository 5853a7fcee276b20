"""Batched Kaldi-compatible log-mel filterbank (the Audio-MAE front end).

:class:`LogMelFrontend` reproduces ``torchaudio.compliance.kaldi.fbank(wav, htk_compat=True,
sample_frequency=16000, use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0,
frame_shift=10, frame_length=25)`` for a whole batch at once, on any device:

frames (snip_edges: only whole windows) -> per-frame DC removal -> pre-emphasis 0.97 (first sample
against itself, as Kaldi) -> symmetric Hann window -> zero-pad to the next power of two -> |rfft|^2
-> Kaldi mel banks (20 Hz .. Nyquist) -> log with a float32-epsilon floor -> (x - mean) / (2 std).

Clips shorter than one window are zero-padded to one window (one frame) instead of yielding nothing.

Speed (see docs/BENCHMARKS.md, "Front end"): DC removal and pre-emphasis are applied algebraically while
the windowed frames are written into one zero-padded buffer; the power spectrum is squared in place and
its re/im sum is left to the mel product; the mel matrix (about 500 non-zeros of 128 x 257) is applied
as a few dense blocks, each over only the bins its filters touch; the output is written in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchaudio.compliance import kaldi

from ajepa.errors import AudioInputError, ConfigError
from ajepa.validation import check_fields, check_range

__all__ = ["FrontendConfig", "LogMelFrontend"]

_PREEMPHASIS = 0.97
# Bounds on a front end a config (or an untrusted model file) may ask for.
MAX_SAMPLE_RATE = 384_000
MAX_MELS = 512
_LOW_FREQ_HZ = 20.0  # Kaldi's default lower edge of the first mel filter
_CPU_CHUNK_FRAMES = 2048  # frames per CPU chunk (two 10 s clips): cache-sized buffers, few parallel regions
_MEL_BLOCKS = 8  # filter groups of the blocked mel product (8 needs ~13% of the dense FLOPs)
_LOG_FLOOR = torch.finfo(torch.float32).eps  # Kaldi floors energies at float eps before the log


@dataclass
class FrontendConfig:
    """Front-end settings; travel with checkpoints and exported models.

    ``norm_mean`` / ``norm_std`` are statistics of the *unnormalised* log-mel (see
    ``python -m ajepa.features.stats``); pass a dataset's own as Hydra overrides
    ``frontend.norm_mean=... frontend.norm_std=...``.
    """

    sample_rate: int = 16000
    n_mels: int = 128
    win_ms: float = 25.0
    hop_ms: float = 10.0
    norm_mean: float = -4.2677393  # Audio-MAE AudioSet statistics until a dataset's own are computed
    norm_std: float = 4.5689974

    def __post_init__(self) -> None:
        check_fields(self, "frontend")
        check_range("frontend.sample_rate", self.sample_rate, 1000, MAX_SAMPLE_RATE)
        check_range("frontend.n_mels", self.n_mels, 1, MAX_MELS)
        check_range("frontend.win_ms", self.win_ms, 1.0, 1000.0)
        check_range("frontend.hop_ms", self.hop_ms, 0.1, self.win_ms)
        if self.norm_std <= 0:
            raise ConfigError(f"frontend.norm_std must be positive, got {self.norm_std}")


class LogMelFrontend(nn.Module):
    """Waveforms ``(B, N)`` -> log-mel ``(B, F, T)``, Kaldi fbank parity, optional normalisation.

    ``F = cfg.n_mels``; ``T = 1 + (max(N, win) - win) // hop`` (Kaldi ``snip_edges=True``), where
    ``win`` and ``hop`` are ``win_ms`` / ``hop_ms`` in samples (400 and 160 at 16 kHz).
    The input is assumed to be at ``cfg.sample_rate`` (resample with :func:`ajepa.features.load_audio`).
    """

    window: Tensor
    mel_banks: Tensor
    interleaved_banks: Tensor

    def __init__(self, cfg: FrontendConfig = FrontendConfig(), normalize: bool = True) -> None:
        super().__init__()
        if cfg.norm_std <= 0:
            raise AudioInputError(f"FrontendConfig.norm_std must be positive, got {cfg.norm_std}")
        self.cfg = cfg
        self.normalize = normalize
        # Same integer rounding as Kaldi so that odd rates/durations frame identically.
        self.win_length = int(cfg.sample_rate * cfg.win_ms * 0.001)
        self.hop_length = int(cfg.sample_rate * cfg.hop_ms * 0.001)
        if self.win_length < 2 or self.hop_length < 1:
            raise AudioInputError(f"window {self.win_length} / hop {self.hop_length} samples are too short")
        self.n_fft = 1 << (self.win_length - 1).bit_length()
        banks, _ = kaldi.get_mel_banks(
            cfg.n_mels, self.n_fft, float(cfg.sample_rate), _LOW_FREQ_HZ, 0.0, 100.0, -500.0, 1.0
        )
        # get_mel_banks leaves out the Nyquist bin; Kaldi pads it with a zero column, so do we.
        banks = nn.functional.pad(banks.float(), (0, 1))
        self.register_buffer("mel_banks", banks, persistent=False)  # (F, n_fft // 2 + 1)
        # Each column twice, to apply to the interleaved (re^2, im^2) pairs of view_as_real(spectrum).
        self.register_buffer("interleaved_banks", banks.repeat_interleave(2, dim=1), persistent=False)
        self.mel_blocks = _mel_blocks(banks, _MEL_BLOCKS)
        window = torch.hann_window(self.win_length, periodic=False, dtype=torch.float32)
        # Kaldi pre-emphasises a frame's first sample against itself; the symmetric Hann window weights
        # that sample by exactly 0, so the frame buffer's first column is simply left at zero.
        assert window[0] == 0.0
        self.register_buffer("window", window, persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Number of frames ``T`` for a clip of ``num_samples`` samples (at least 1)."""
        return 1 + (max(int(num_samples), self.win_length) - self.win_length) // self.hop_length

    def valid_frames(self, lengths: Tensor, total_frames: int) -> Tensor:
        """Padding mask for a batch of clips of unequal length.

        Args:
            lengths: ``(B,)`` number of real samples per clip.
            total_frames: ``T`` of the batch output.

        Returns:
            ``(B, T)`` bool, True where the frame's window lies within the real samples. A clip shorter
            than one window keeps its single (padded) frame; a zero-length clip has none.
        """
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        frames = 1 + (lengths.clamp(min=self.win_length) - self.win_length) // self.hop_length
        frames = torch.where(lengths > 0, frames, torch.zeros_like(frames))
        t = torch.arange(total_frames, device=lengths.device)
        return t.unsqueeze(0) < frames.unsqueeze(1)

    def forward(self, wav: Tensor) -> Tensor:
        """``(B, N)`` float waveforms -> ``(B, F, T)`` log-mel (normalised if ``self.normalize``)."""
        if wav.ndim != 2:
            raise AudioInputError(f"LogMelFrontend expects (B, N) waveforms, got shape {tuple(wav.shape)}")
        if not wav.is_floating_point():
            raise AudioInputError(f"LogMelFrontend expects float waveforms, got {wav.dtype}")
        if wav.shape[0] == 0:
            raise AudioInputError("LogMelFrontend got an empty batch")
        wav = wav.to(self.window.dtype)
        if wav.shape[-1] < self.win_length:
            wav = nn.functional.pad(wav, (0, self.win_length - wav.shape[-1]))

        batch, num_samples = wav.shape
        num_frames = self.num_frames(num_samples)
        logmel = wav.new_empty(batch, self.cfg.n_mels, num_frames)
        # On CPU a few clips at a time keep the working set in cache; accelerators take the whole batch.
        chunk = batch
        if wav.device.type == "cpu":
            chunk = min(batch, max(1, _CPU_CHUNK_FRAMES // num_frames))
        # Zeroed once: the first column (see __init__) and the padding past the window are never written.
        frames = wav.new_zeros(chunk, num_frames, self.n_fft)
        mel = wav.new_empty(self.cfg.n_mels, chunk * num_frames)
        for start in range(0, batch, chunk):
            part = wav[start : start + chunk]
            out = logmel[start : start + chunk]
            self._log_mel_into(part, frames[: part.shape[0]], mel[:, : out.shape[0] * num_frames], out)
            if self.normalize:
                out.sub_(self.cfg.norm_mean).div_(2.0 * self.cfg.norm_std)
        return logmel

    def _log_mel_into(self, wav: Tensor, frames: Tensor, mel: Tensor, out: Tensor) -> None:
        """``(b, N)`` -> unnormalised log-mel written into ``out`` ``(b, F, T)``.

        ``frames`` ``(b, T, n_fft)`` and ``mel`` ``(F, b T)`` are scratch buffers.
        """
        self._write_windowed_frames(wav, frames)
        # |X|^2 = re^2 + im^2: square the interleaved pairs in place, the mel product sums each pair.
        squares = torch.view_as_real(torch.fft.rfft(frames)).square_().flatten(-2).flatten(0, 1)  # (b T, 2 K)
        # Only the non-zero blocks of the mel matrix, each over all frames of the chunk: few, large products.
        for f0, f1, lo, hi in self.mel_blocks:
            torch.mm(self.interleaved_banks[f0:f1, lo:hi], squares[:, lo:hi].T, out=mel[f0:f1])
        torch.log(mel.clamp_min_(_LOG_FLOOR).unflatten(1, out.shape[::2]).transpose(0, 1), out=out)

    def _write_windowed_frames(self, wav: Tensor, frames: Tensor) -> None:
        """Fill ``frames[..., 1:win]`` ``(b, T, n_fft)`` with DC-removed, pre-emphasised, windowed samples.

        Kaldi removes each frame's mean and then pre-emphasises inside the frame. Both are linear, so for
        frame start ``s`` and mean ``m``: ``y[j] = e[s + j - 1] - (1 - a) m`` for ``j >= 1``, with
        ``e = x[1:] - a x[:-1]`` pre-emphasised once for the whole clip (``y[0]`` is windowed to 0).
        """
        win, hop, a = self.win_length, self.hop_length, _PREEMPHASIS
        num_frames = frames.shape[1]
        # Frame sums from sums over blocks of gcd(win, hop) samples: one pass over the clip.
        block = math.gcd(win, hop)
        block_sums = wav[:, : (num_frames - 1) * hop + win].unflatten(-1, (-1, block)).sum(-1)
        frame_sums = block_sums.unfold(-1, win // block, hop // block).sum(-1, keepdim=True)  # (b, T, 1)
        emphasized = torch.add(wav[:, 1:], wav[:, :-1], alpha=-a)
        body = frames[..., 1:win]
        torch.mul(emphasized.unfold(-1, win - 1, hop)[:, :num_frames], self.window[1:], out=body)
        body.addcmul_(frame_sums, self.window[1:], value=-(1.0 - a) / win)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.cfg.sample_rate}, n_mels={self.cfg.n_mels}, win={self.win_length}, "
            f"hop={self.hop_length}, n_fft={self.n_fft}, normalize={self.normalize}"
        )


def _mel_blocks(banks: Tensor, num_blocks: int) -> list[tuple[int, int, int, int]]:
    """Split the ``(F, K)`` filters into ``num_blocks`` runs ``(f0, f1, lo, hi)`` of consecutive filters.

    The filters are narrow triangles, so a run touches only bins ``lo // 2 .. hi // 2``: (lo, hi) index
    the interleaved (re, im) columns. An all-zero run gets an empty range and so a zero output.
    """
    num_filters = banks.shape[0]
    num_blocks = min(num_blocks, num_filters)
    blocks = []
    for i in range(num_blocks):
        f0, f1 = i * num_filters // num_blocks, (i + 1) * num_filters // num_blocks
        bins = banks[f0:f1].ne(0).any(0).nonzero().flatten().tolist()
        lo, hi = (bins[0], bins[-1] + 1) if bins else (0, 0)
        blocks.append((f0, f1, 2 * lo, 2 * hi))
    return blocks
