"""ajepa encoders for X-ARES (the eXtensive Audio Representation and Evaluation Suite; ``pip install 'ajepa[xares]'``).

X-ARES checks an encoder with ``xares.audio_encoder_checker.check_audio_encoder``: a ``torch.nn.Module`` whose class
name ends in ``Encoder``, with ``sampling_rate``, ``output_dim`` and ``hop_size_in_ms``, mapping audio ``(B, T)`` to
frames ``(B, T', D)``. Its tasks pool the frames over time for clip tasks (MLP and kNN), so the frames here are the
per-column half of ajepa's recommended read-out: each 160 ms time column's frequency tokens concatenated, of the mean
of the read-out's layers (``freqcat``; X-ARES's mean over time gives ajepa's ``freqcat`` clip embedding).

    from ajepa.xares import AjepaEncoder
    encoder = AjepaEncoder()                       # the shipped default; or AjepaEncoder("my_export")
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from ajepa.errors import AudioInputError
from ajepa.inference import Embedder, load

__all__ = ["AjepaEncoder"]


class AjepaEncoder(nn.Module):
    """``forward(audio (B, T) float at sampling_rate) -> (B, T', output_dim)``, one frame per 160 ms time column.

    ``model``: an :class:`Embedder`, or what :func:`ajepa.load` takes (``None``: the shipped default). The encoder
    runs in float32 so that the figures do not depend on the CPU.
    """

    def __init__(self, model: Embedder | str | os.PathLike | None = None, device: str | None = None) -> None:
        super().__init__()
        self.embedder = model if isinstance(model, Embedder) else load(model, device=device or "cpu", bf16=False)
        frontend, patch_t = self.embedder.frontend_config, self.embedder.patch[1]
        self.sampling_rate: int = self.embedder.sample_rate
        self.hop_size_in_ms: float = patch_t * frontend.hop_ms
        self.output_dim: int = self.embedder.window_grid[0] * self.embedder.embed_dim

    def forward(self, audio: Tensor) -> Tensor:
        if not isinstance(audio, Tensor) or audio.ndim != 2:
            raise AudioInputError(f"X-ARES audio must be a tensor (B, T), got {getattr(audio, 'shape', type(audio))}")
        device = audio.device
        rows = audio.detach().to("cpu", torch.float32)
        feats = list(self.embedder.iter_features(iter(rows), pooling="freqcat"))
        # Rows of one length give one number of columns, so the frames stack.
        return torch.stack([f.col_cat for f in feats]).to(device)
