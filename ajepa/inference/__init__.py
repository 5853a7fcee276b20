"""Embedding extraction: a trained encoder turns waveforms or audio files into clip and frame embeddings.

>>> import ajepa
>>> model = ajepa.load("exported_model/")              # or a .safetensors, or a training checkpoint .pt
>>> clip = model.embed("dog.wav")                         # (D,) float32
>>> clips = model.embed(["a.wav", "b.flac"])              # (2, D)
>>> clip, frames, times = model.embed(wav, sr=44100, return_frames=True)   # frames (T', D), times (T',) s
>>> probe_ready = ajepa.load("exported_model/", average_layers="all")   # mean of every layer's output

How audio becomes embeddings (every rule here is part of the API):

- **Input kinds.** A path or a 1-D array/tensor ``(N,)`` is one clip and gives one result. A list/tuple of paths
  and/or 1-D arrays is a batch. A 2-D array/tensor is a **batch of clips** ``(B, N)``, one per row, unless
  ``channels_first=True``, which makes it one multichannel clip ``(C, N)`` mixed down to mono. (The shapes cannot be
  told apart reliably, so we do not guess.) Arrays need ``sr``; everything is resampled to the model's rate.
- **Windows.** The encoder sees windows of the model's ``clip_seconds`` (the training crop length). Longer audio is
  cut into windows that overlap by half, with window starts on the patch-column grid, so every time column of the
  long spectrogram is computed identically in each window that holds it. Each column's embedding is taken from the
  window in which it lies closest to the window centre (most context on both sides; ties go to the earlier window).
  Shorter audio, and the end of longer audio, is zero-padded to a whole window, as in training.
- **Validity.** Padded samples never contribute: a token counts only if its time column holds at least one frame
  of real audio (:func:`ajepa.features.valid_tokens`). Audio shorter than one 25 ms frame is padded to one frame,
  which then counts as real.
- **Frames.** A frame embedding is the mean over the ``F_p`` frequency tokens of one time column: one vector per
  16 frames (160 ms at the default 10 ms hop). Its timestamp is the centre of those 16 analysis windows, in seconds.
- **Pooling.** ``"mean"``: mean over all valid tokens (D). ``"mean+max"``: that mean concatenated with the max over
  valid tokens (2D). ``"freqcat"``: each time column's F_p tokens concatenated in frequency order, then the mean
  over columns (F_p * D): the M2D / EVAR convention, which keeps where in frequency a feature fired.
  ``"freqcat+std"``: that mean concatenated with the population standard deviation (ddof 0) over columns of the
  same column vectors (2 * F_p * D): classical mean + std statistics pooling, which also keeps how much each
  feature varies over time; a clip of one column has a zero std part.
  ``"none"``: no clip pooling; the result is the frame embeddings ``(T', D)``.
- **Layers.** Token embeddings are the encoder's final output by default. ``average_layers=k`` (:func:`load`,
  :class:`Embedder`) makes them the mean of the last ``k`` of the encoder's ``depth + 1`` hidden states (the
  patch embedding, then each block's output), each layer-normalised (``ViTEncoder.forward_intermediates``);
  ``"all"`` averages every one of them, the embedding layer included. Frames and every pooling are built on
  these tokens. Frozen linear probes of trained encoders are clearly better with the average over all layers
  (SUPERB-style layer pooling) than with the final output alone. It is a run-time setting, not part of an
  exported model.

The default encoder of a training checkpoint is the EMA *target* encoder: in I-JEPA-style training it is the
temporally smoothed average of the context encoder, it computed the regression targets, and it is the representation
that evaluates best; the context encoder is available with ``encoder="context"``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ajepa.inference.choices import AVERAGE_ALL, CLIP_POOLINGS, POOLINGS, average_layers_arg, resolve_average_layers

if TYPE_CHECKING:  # for type checkers; at run time __getattr__ imports them on first use
    from ajepa.inference.embedder import Embedder, pick_device
    from ajepa.inference.inputs import AudioSource
    from ajepa.inference.loading import ENCODER_CHOICES, embed, from_pretrained, load
    from ajepa.inference.readout import RECOMMENDED_READOUT, ClipFeatures, Readout

__all__ = ["AVERAGE_ALL", "CLIP_POOLINGS", "ENCODER_CHOICES", "POOLINGS", "RECOMMENDED_READOUT", "AudioSource",
           "ClipFeatures", "Embedder", "Readout", "average_layers_arg", "embed", "from_pretrained", "load", "pick_device",
           "resolve_average_layers"]

# Where each torch-backed name lives: imported on first use, so that the command lines' --help (which need only
# the choices above) answer without importing torch and timm (seconds).
_LAZY = {"Embedder": "embedder", "pick_device": "embedder", "AudioSource": "inputs", "ENCODER_CHOICES": "loading",
         "embed": "loading", "load": "loading", "from_pretrained": "loading", "RECOMMENDED_READOUT": "readout", "ClipFeatures": "readout",
         "Readout": "readout"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"ajepa.inference.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ajepa.inference' has no attribute {name!r}")
