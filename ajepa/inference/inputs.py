"""What users pass to ``embed``: paths, arrays and lists of them, split into clips; results shaped back."""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np
from torch import Tensor

from ajepa.errors import AudioInputError
from ajepa.features.audio import load_audio
from ajepa.inference.pooling import ClipFeatures

__all__ = ["AudioSource", "as_sources", "format_output", "read_source"]

AudioSource = Union[str, os.PathLike, np.ndarray, Tensor]


def read_source(source: AudioSource, sr: int | None, target_sr: int) -> Tensor:
    """One source as a mono float32 waveform at ``target_sr``; files carry their own rate, arrays need ``sr``."""
    is_path = isinstance(source, (str, os.PathLike))
    return load_audio(source, sr=None if is_path else sr, target_sr=target_sr)


def as_sources(wav: Any, sr: int | None, channels_first: bool) -> tuple[list[AudioSource], bool]:
    """Split the input into per-clip sources and say whether it was a single clip."""
    if isinstance(wav, (str, os.PathLike)):
        return [wav], True
    if isinstance(wav, (np.ndarray, Tensor)):
        if sr is None:
            raise AudioInputError(f"an array of shape {tuple(wav.shape)} needs its sample rate; pass sr=...")
        if wav.ndim == 1 or (wav.ndim == 2 and channels_first):
            return [wav], True
        if wav.ndim == 2:
            if wav.shape[0] == 0:
                raise AudioInputError("an empty batch (0, N) has nothing to embed")
            return list(wav), False
        raise AudioInputError(f"audio arrays must be (N,) or (B, N) (or (C, N) with channels_first=True), "
                              f"got shape {tuple(wav.shape)}")
    if isinstance(wav, (list, tuple)):
        if not wav:
            raise AudioInputError("an empty list has nothing to embed")
        for i, item in enumerate(wav):
            if isinstance(item, (np.ndarray, Tensor)):
                if item.ndim != 1:
                    raise AudioInputError(f"item {i}: arrays in a list must be 1-D (N,), got {tuple(item.shape)}")
                if sr is None:
                    raise AudioInputError(f"item {i} is an array and needs its sample rate; pass sr=...")
            elif not isinstance(item, (str, os.PathLike)):
                raise AudioInputError(f"item {i}: expected a path or a 1-D array, got {type(item).__name__}")
        return list(wav), False
    raise AudioInputError(f"unsupported audio input of type {type(wav).__name__}; pass a path, a list or an array")


def format_output(feats: list[ClipFeatures], pooling: str, return_frames: bool, single: bool) -> Any:
    """Clip embeddings (and frames and times) as numpy, one result for a single clip or stacked for a batch."""
    if pooling == "none":
        emb: Any = [f.col_mean.numpy() for f in feats]
    else:
        emb = np.stack([f.pooled(pooling).numpy() for f in feats]).astype(np.float32, copy=False)
    frames = [f.col_mean.numpy() for f in feats]
    times = [f.times for f in feats]
    if single:
        emb, frames, times = emb[0], frames[0], times[0]
    return (emb, frames, times) if return_frames else emb
