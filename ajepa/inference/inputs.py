"""What users pass to ``embed``: paths, arrays and lists of them, split into clips; results shaped back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np
import soundfile as sf
from torch import Tensor

from ajepa.errors import AudioInputError
from ajepa.features.audio import MAX_CHANNELS, list_audio_files, load_audio, read_window, resampled_length
from ajepa.inference.readout import ClipFeatures, Readout

__all__ = ["AudioSource", "as_sources", "format_output", "read_source"]

AudioSource = Union[str, os.PathLike, np.ndarray, Tensor]


# Paths read as lists of files (ajepa.features.audio.list_audio_files), not as audio.
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".txt")

# Files longer than this are read window by window, so memory does not grow with the recording's duration.
STREAM_SECONDS = 120.0


class StreamedAudio:
    """A long audio file as a lazy mono waveform at ``target_sr``: ``numel()`` from the header, and a slice
    ``[start:stop]`` decodes only that stretch (and a resampling margin) with a seek, matching a full decode to
    float rounding (:func:`ajepa.features.audio.read_window`). What :class:`~ajepa.inference.windows.WindowPlan`
    cuts windows from."""

    ndim = 1

    def __init__(self, path: str | os.PathLike, target_sr: int) -> None:
        self.path, self.target_sr = os.fspath(path), int(target_sr)
        try:
            info = sf.info(self.path)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
            raise AudioInputError(f"{self.path}: unreadable audio file ({err})") from err
        self.length = resampled_length(info.frames, info.samplerate, self.target_sr)

    def numel(self) -> int:
        """Samples at ``target_sr``, from the file header."""
        return self.length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, span: slice) -> Tensor:
        start, stop, _ = span.indices(self.length)
        try:
            with sf.SoundFile(self.path) as audio:
                wav = read_window(audio, start, stop - start, self.target_sr)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
            raise AudioInputError(f"{self.path}: unreadable audio file ({err})") from err
        except AudioInputError as err:  # a window of non-finite or overflowing samples
            raise AudioInputError(f"{self.path}, {start / self.target_sr:.2f} s: {err}") from None
        if wav is None:
            raise AudioInputError(f"{self.path}: the file ends before the {self.length} samples its header promises")
        return wav


def read_source(source: AudioSource, sr: int | None, target_sr: int) -> Tensor | StreamedAudio:
    """One source as a mono float32 waveform at ``target_sr``; files carry their own rate, arrays need ``sr``.
    A file longer than :data:`STREAM_SECONDS` comes back as a :class:`StreamedAudio`, read window by window."""
    if isinstance(source, (str, os.PathLike)):
        try:
            info = sf.info(os.fspath(source))
        except Exception:  # load_audio names every way a file cannot be read
            info = None
        if info is not None and info.samplerate > 0 and info.frames > STREAM_SECONDS * info.samplerate:
            return StreamedAudio(source, target_sr)
        return load_audio(source, sr=None, target_sr=target_sr)  # a file carries its own rate
    return load_audio(source, sr=sr, target_sr=target_sr)


def as_sources(wav: Any, sr: int | None, channels_first: bool) -> tuple[list[AudioSource], bool]:
    """Split the input into per-clip sources and say whether it was a single clip."""
    if isinstance(wav, (str, os.PathLike)):
        if os.path.isdir(wav) or Path(wav).suffix.lower() in MANIFEST_SUFFIXES:
            files = list_audio_files(wav)  # a folder (recursively) or a manifest: a batch, as the CLI reads it
            if not files:
                raise AudioInputError(f"{wav}: no audio files found")
            return list(files), False
        return [wav], True
    if isinstance(wav, (np.ndarray, Tensor)):
        if sr is None:
            raise AudioInputError(f"an array of shape {tuple(wav.shape)} needs its sample rate; pass sr=...")
        if wav.ndim == 1 or (wav.ndim == 2 and channels_first):
            return [wav], True
        if wav.ndim == 2:
            if wav.shape[0] == 0:
                raise AudioInputError("an empty batch (0, N) has nothing to embed")
            if wav.shape[1] <= MAX_CHANNELS < wav.shape[0]:
                raise AudioInputError(
                    f"an array of shape {tuple(wav.shape)} looks like one clip in channels-last layout (N, C) "
                    f"(soundfile's); a 2-D array is read as a batch of clips (B, N). Pass arr.T with "
                    f"channels_first=True to embed it as one multichannel clip")
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


def format_output(feats: list[ClipFeatures], readout: Readout, return_frames: bool, single: bool) -> Any:
    """Clip embeddings (and frames and times) as numpy, one result for a single clip or stacked for a batch."""
    if readout.pooling == "none":
        emb: Any = [f.col_mean.numpy() for f in feats]
    else:
        emb = np.stack([f.pooled(readout.pooling).numpy() for f in feats]).astype(np.float32, copy=False)
    frames = [f.col_mean.numpy() for f in feats]
    times = [f.times for f in feats]
    if single:
        emb, frames, times = emb[0], frames[0], times[0]
    return (emb, frames, times) if return_frames else emb
