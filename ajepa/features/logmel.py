"""Batched Kaldi-compatible log-mel filterbank (the Audio-MAE front end).

:class:`LogMelFrontend` reproduces ``torchaudio.compliance.kaldi.fbank(wav, htk_compat=True,
sample_frequency=16000, use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0,
frame_shift=10, frame_length=25)`` for a whole batch at once, on any device:

frames (snip_edges: only whole windows) -> per-frame DC removal -> pre-emphasis 0.97 (first sample
against itself, as Kaldi) -> symmetric Hann window -> zero-pad to the next power of two -> |rfft|^2
-> Kaldi mel banks (20 Hz .. Nyquist) -> log with a float32-epsilon floor -> (x - mean) / (2 std).

Clips shorter than one window are zero-padded to one window (one frame) instead of yielding nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchaudio.compliance import kaldi

from ajepa.errors import AudioInputError

__all__ = ["FrontendConfig", "LogMelFrontend"]

_PREEMPHASIS = 0.97
_LOW_FREQ_HZ = 20.0  # Kaldi's default lower edge of the first mel filter
_CPU_CHUNK_FRAMES = 2048  # frames per CPU chunk (about two 10 s clips)
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


class LogMelFrontend(nn.Module):
    """Waveforms ``(B, N)`` -> log-mel ``(B, F, T)``, Kaldi fbank parity, optional normalisation.

    ``F = cfg.n_mels``; ``T = 1 + (max(N, win) - win) // hop`` (Kaldi ``snip_edges=True``), where
    ``win`` and ``hop`` are ``win_ms`` / ``hop_ms`` in samples (400 and 160 at 16 kHz).
    The input is assumed to be at ``cfg.sample_rate`` (resample with :func:`ajepa.features.load_audio`).
    """

    window: Tensor
    mel_banks: Tensor

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
        self.register_buffer(
            "window", torch.hann_window(self.win_length, periodic=False, dtype=torch.float32), persistent=False
        )

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
        wav = wav.to(self.window.dtype)
        if wav.shape[-1] < self.win_length:
            wav = nn.functional.pad(wav, (0, self.win_length - wav.shape[-1]))

        # On CPU a few clips at a time keep the working set in cache and let the allocator reuse buffers;
        # one huge batch is about 2x slower there. Accelerators get the whole batch in one go.
        if wav.shape[0] == 0:
            raise AudioInputError("LogMelFrontend got an empty batch")
        chunk = wav.shape[0]
        if wav.device.type == "cpu":
            chunk = max(1, _CPU_CHUNK_FRAMES // self.num_frames(wav.shape[-1]))
        logmel = torch.cat([self._logmel(part) for part in wav.split(chunk)])
        if self.normalize:
            logmel = (logmel - self.cfg.norm_mean) / (2.0 * self.cfg.norm_std)
        return logmel

    def _logmel(self, wav: Tensor) -> Tensor:
        """``(B, N)`` -> unnormalised ``(B, F, T)``."""
        frames = self._windowed_frames(wav)  # (B, T, n_fft), zero-padded past the window
        spectrum = torch.view_as_real(torch.fft.rfft(frames))  # (B, T, n_fft // 2 + 1, 2)
        power = spectrum[..., 0].square()
        power.addcmul_(spectrum[..., 1], spectrum[..., 1])
        mel = torch.matmul(power, self.mel_banks.T)  # (B, T, F): one GEMM over all frames
        return mel.clamp_min_(_LOG_FLOOR).log_().transpose(1, 2)

    def _windowed_frames(self, wav: Tensor) -> Tensor:
        """``(B, N)`` -> ``(B, T, n_fft)``: DC-removed, pre-emphasised, windowed, zero-padded frames.

        Kaldi removes each frame's mean and then pre-emphasises inside the frame, the first sample
        against itself. Both are linear, so for frame start ``s`` and mean ``m``:
        ``y[0] = (1 - a) (x[s] - m)`` and ``y[j] = e[s + j - 1] - (1 - a) m`` for ``j >= 1``, with
        ``e = x[1:] - a x[:-1]`` pre-emphasised once for the whole clip. Writing into one preallocated
        buffer matters: on CPU, first-touching fresh large tensors costs more than the arithmetic.
        """
        batch, num_samples = wav.shape
        win, hop, a = self.win_length, self.hop_length, _PREEMPHASIS
        num_frames = self.num_frames(num_samples)
        starts = torch.arange(num_frames, device=wav.device) * hop
        means = nn.functional.avg_pool1d(wav.unsqueeze(1), win, hop).transpose(1, 2)  # (B, T, 1)

        frames = wav.new_empty(batch, num_frames, self.n_fft)
        frames[..., win:] = 0.0
        emphasized = wav[:, 1:] - a * wav[:, :-1]
        frames[..., 1:win] = emphasized.unfold(-1, win - 1, hop)[:, :num_frames]
        frames[..., 0] = (1.0 - a) * wav[:, starts]
        body = frames[..., :win]
        body.mul_(self.window)
        body.addcmul_(means, self.window, value=-(1.0 - a))
        return frames

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.cfg.sample_rate}, n_mels={self.cfg.n_mels}, win={self.win_length}, "
            f"hop={self.hop_length}, n_fft={self.n_fft}, normalize={self.normalize}"
        )
