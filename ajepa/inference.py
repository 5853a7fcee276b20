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
  patch embedding, then each block's output), each layer-normalised (``ViTEncoder.forward_layers``);
  ``"all"`` averages every one of them, the embedding layer included. Frames and every pooling are built on
  these tokens. Frozen linear probes of trained encoders are clearly better with the average over all layers
  (SUPERB-style layer pooling) than with the final output alone. It is a run-time setting, not part of an
  exported model.

The default encoder of a training checkpoint is the EMA *target* encoder: in I-JEPA-style training it is the
temporally smoothed average of the context encoder, it computed the regression targets, and it is the representation
that evaluates best; the context encoder is available with ``encoder="context"``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from ajepa.errors import AudioInputError, CheckpointError, ConfigError
from ajepa.features.audio import load_audio
from ajepa.features.logmel import FrontendConfig, LogMelFrontend
from ajepa.features.patches import grid_shape, patchify, valid_tokens
from ajepa.models.sizes import EncoderConfig
from ajepa.models.vit import ViTEncoder

__all__ = ["POOLINGS", "CLIP_POOLINGS", "AVERAGE_ALL", "ClipFeatures", "Embedder", "average_layers_arg", "embed",
           "load", "pick_device", "resolve_average_layers"]

POOLINGS = ("mean", "mean+max", "freqcat", "freqcat+std", "none")
# The poolings that give one vector per clip: the choices of CLIs that store or probe clip embeddings.
CLIP_POOLINGS = tuple(p for p in POOLINGS if p != "none")
# The poolings built on each time column's concatenated frequency tokens (``ClipFeatures.col_cat``); features
# computed for either of them serve both.
_COLUMN_CAT_POOLINGS = ("freqcat", "freqcat+std")
ENCODER_CHOICES = ("target", "context")
# ``average_layers`` value meaning every hidden state of the encoder (resolved to depth + 1).
AVERAGE_ALL = "all"

AudioSource = Union[str, os.PathLike, np.ndarray, Tensor]

log = logging.getLogger(__name__)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks the best available: CUDA, then Apple MPS, then CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_average_layers(value: int | str, depth: int) -> int:
    """How many last hidden states an encoder of ``depth`` blocks averages for ``average_layers=value``: an int
    in ``1..depth + 1``, or :data:`AVERAGE_ALL` for ``depth + 1`` (every block and the patch embedding).

    Raises:
        ValueError: anything else, naming the encoder depth (a plain ``ValueError``, not a model-file error).
    """
    if value == AVERAGE_ALL:
        return int(depth) + 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= depth + 1:
        raise ValueError(f"average_layers must be an int in 1..{depth + 1} (the encoder's hidden states: depth + 1) "
                         f"or {AVERAGE_ALL!r}, got {value!r}")
    return value


def average_layers_arg(text: str) -> int | str:
    """``argparse`` type of the ``--average-layers`` flags: :data:`AVERAGE_ALL` or a positive int.

    The upper bound is the depth of the model, so it is checked when the model is built
    (:func:`resolve_average_layers`), not here.
    """
    if text == AVERAGE_ALL:
        return AVERAGE_ALL
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int or {AVERAGE_ALL!r}, got {text!r}")
    return value


@dataclass
class ClipFeatures:
    """Stitched per-column results of one clip, from :meth:`Embedder.iter_features` (CPU float32).

    Attributes:
        col_mean: ``(T', D)`` frame embeddings (mean over each time column's valid tokens).
        col_max: ``(T', D)`` max over each column's valid tokens (only for ``"mean+max"``).
        col_count: ``(T',)`` number of valid tokens per column.
        times: ``(T',)`` column centres in seconds.
        col_cat: ``(T', F_p * D)`` each column's tokens concatenated in frequency order (only for ``"freqcat"``
            and ``"freqcat+std"``).
    """

    col_mean: Tensor
    col_max: Tensor | None
    col_count: Tensor
    times: np.ndarray
    col_cat: Tensor | None = None

    def pooled(self, pooling: str) -> Tensor:
        """Clip embedding: ``"mean"`` over valid tokens ``(D,)``, ``"mean+max"`` ``(2D,)``, ``"freqcat"``
        ``(F_p * D,)`` or ``"freqcat+std"`` ``(2 * F_p * D,)``; all but ``"mean"`` need the features to have been
        computed for that pooling (the two ``freqcat`` poolings share theirs)."""
        weights = self.col_count.to(torch.float32)
        if pooling in _COLUMN_CAT_POOLINGS:
            if self.col_cat is None:
                raise ValueError(f"pooling {pooling!r} needs the column concatenations: features computed with "
                                 f"pooling in {_COLUMN_CAT_POOLINGS}")
            # Columns hold all F_p tokens or none (validity is per time column), so plain statistics are exact.
            mean = self.col_cat.mean(0)
            if pooling == "freqcat":
                return mean
            # Population std (ddof 0): defined, and zero, for a clip of a single column.
            return torch.cat([mean, self.col_cat.std(0, correction=0)])
        mean = (self.col_mean * weights[:, None]).sum(0) / weights.sum()
        if pooling == "mean":
            return mean
        if pooling != "mean+max" or self.col_max is None:
            raise ValueError(f"pooling {pooling!r} needs 'mean', or 'mean+max' with features computed for it")
        return torch.cat([mean, self.col_max.amax(0)])


class _ClipState:
    """Accumulates window results of one clip; each column keeps the window where it is most central."""

    def __init__(self, n_windows: int, n_cols: int, dim: int, n_freq: int, pooling: str) -> None:
        self.remaining = n_windows
        self.col_mean = torch.zeros(n_cols, dim)
        self.col_max = torch.zeros(n_cols, dim) if pooling == "mean+max" else None
        self.col_cat = torch.zeros(n_cols, n_freq * dim) if pooling in _COLUMN_CAT_POOLINGS else None
        self.col_count = torch.zeros(n_cols, dtype=torch.long)
        self.distance = torch.full((n_cols,), math.inf)


class Embedder:
    """A frozen log-mel front end + ViT encoder that embeds audio of any length (see the module docstring).

    Attributes:
        frontend: the :class:`LogMelFrontend` (normalisation statistics of the training data included).
        encoder: the :class:`ViTEncoder` in eval mode.
        clip_seconds: the window length the encoder sees (the training crop length).
        sample_rate: the rate every input is resampled to (Hz).
        embed_dim: ``D``, the width of clip ("mean") and frame embeddings.
        source_encoder: ``"target"``, ``"context"`` or ``"random"`` (from :meth:`from_config`).
        average_layers: the encoder's token embeddings are the mean of its last ``average_layers`` hidden states
            (1: the final output, the default; see "Layers" in the module docstring). Given as an int in
            ``1..depth + 1`` or ``"all"`` (``depth + 1``: every block and the patch embedding); stored as the int.
        pooling: the clip pooling :meth:`embed` uses when none is given (an exported model's recorded read-out).
        bf16: run the encoder under bfloat16 autocast on CUDA or CPU (faster on GPUs and on CPUs with AMX /
            AVX512-BF16, slower on older CPUs; about 1e-2 relative deviation); ignored on MPS. Off by default so
            that results are plain float32.
    """

    def __init__(
        self,
        frontend: LogMelFrontend,
        encoder: ViTEncoder,
        *,
        clip_seconds: float,
        source_encoder: str = "target",
        device: str | torch.device | None = None,
        bf16: bool = False,
        average_layers: int | str = 1,
        pooling: str = "mean",
    ) -> None:
        cfg: FrontendConfig = frontend.cfg
        if pooling not in CLIP_POOLINGS:
            raise ValueError(f"the default pooling must be one of {CLIP_POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.frontend = frontend
        self.encoder = encoder
        self.encoder_config: EncoderConfig = encoder.cfg
        self.frontend_config = cfg
        self.sample_rate = int(cfg.sample_rate)
        self.embed_dim = int(self.encoder_config.embed_dim)
        self.patch: tuple[int, int] = tuple(self.encoder_config.patch)  # type: ignore[assignment]
        self.source_encoder = source_encoder
        self.bf16 = bf16
        self.average_layers = resolve_average_layers(average_layers, self.encoder_config.depth)
        self.clip_seconds = float(clip_seconds)

        # Same integer rounding as the Kaldi front end, so window starts land exactly on frame boundaries.
        self._win = int(cfg.sample_rate * cfg.win_ms * 0.001)
        self._hop = int(cfg.sample_rate * cfg.hop_ms * 0.001)
        self._clip_samples = int(round(self.clip_seconds * self.sample_rate))
        self._grid = grid_shape(cfg.n_mels, frontend.num_frames(self._clip_samples), self.patch)
        if self._grid[1] < 2:
            raise ConfigError(
                f"clip_seconds={clip_seconds} gives a window of {self._grid[1]} patch column(s); need at least 2"
            )
        col_samples = self.patch[1] * self._hop
        self._hop_cols = max(1, self._grid[1] // 2)  # 50 % overlap
        self._window_hop = self._hop_cols * col_samples
        self.to(pick_device(device))
        self.frontend.eval()
        self.encoder.eval()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        encoder: EncoderConfig,
        frontend: FrontendConfig = FrontendConfig(),
        clip_seconds: float = 2.0,
        seed: int = 0,
        device: str | torch.device | None = None,
        average_layers: int | str = 1,
    ) -> "Embedder":
        """A randomly initialised embedder (baselines, benchmarks, tests); the same ``seed`` gives the same weights.

        The global RNG is forked, so this neither depends on nor changes the caller's random state.
        ``average_layers`` as in :class:`Embedder`, so that a random baseline is read out like the trained model.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vit = ViTEncoder(encoder)
        return cls(LogMelFrontend(frontend), vit, clip_seconds=clip_seconds, source_encoder="random", device=device,
                   average_layers=average_layers)

    def to(self, device: str | torch.device) -> "Embedder":
        """Move the model to ``device`` (in place) and return ``self``."""
        self.frontend.to(device)
        self.encoder.to(device)
        return self

    def pooled_dim(self, pooling: str) -> int:
        """Width of a clip embedding under ``pooling`` (see :data:`POOLINGS`; ``"none"`` gives frame width D)."""
        _check_pooling(pooling)
        f_p = self._grid[0]
        return self.embed_dim * {"mean+max": 2, "freqcat": f_p, "freqcat+std": 2 * f_p}.get(pooling, 1)

    @property
    def window_grid(self) -> tuple[int, int]:
        """``(F_p, T_p)``: the patch grid of one encoder window."""
        return self._grid

    def num_windows(self, num_samples: int) -> int:
        """How many encoder windows a clip of ``num_samples`` samples (at :attr:`sample_rate`) is cut into."""
        return 1 + max(0, math.ceil((int(num_samples) - self._clip_samples) / self._window_hop))

    @property
    def device(self) -> torch.device:
        """Where the encoder runs."""
        return next(self.encoder.parameters()).device

    def export_config(self) -> dict[str, Any]:
        """The ``config.json`` content of an exported model (docs/CONTRACTS.md).

        The read-out (:attr:`pooling`, :attr:`average_layers`) is recorded as ``"readout"``, the model's recommended
        default for whoever loads it; ``bf16`` and the device are not part of it.
        """
        from ajepa.export import EXPORT_FORMAT, EXPORT_VERSION

        encoder = asdict(self.encoder_config)
        encoder["patch"] = list(encoder["patch"])
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "frontend": asdict(self.frontend_config),
            "encoder": encoder,
            "sample_rate": self.sample_rate,
            "clip_seconds": self.clip_seconds,
            "source_encoder": self.source_encoder,
            "readout": {"pooling": self.pooling,
                        "average_layers": AVERAGE_ALL if self.average_layers == self.encoder_config.depth + 1
                        else self.average_layers},
        }

    def save(self, out: str | os.PathLike, *, fp16: bool = False) -> Path:
        """Export to a folder (``model.safetensors`` + ``config.json``) or to ``<name>.safetensors`` + ``<name>.json``.

        ``fp16`` stores the weights as float16 (half the file; loading computes in float32 again). Returns the path
        of the ``.safetensors`` file. The result loads back with :func:`load`.
        """
        from ajepa.export import write_export

        return write_export(self.encoder.state_dict(), self.export_config(), out,
                            dtype=torch.float16 if fp16 else torch.float32)

    def __repr__(self) -> str:
        e = self.encoder_config
        return (f"Embedder(D={e.embed_dim}, depth={e.depth}, patch={self.patch}, clip_seconds={self.clip_seconds}, "
                f"sample_rate={self.sample_rate}, encoder={self.source_encoder!r}, pooling={self.pooling!r}, "
                f"average_layers={self.average_layers}, device={self.device})")

    # ------------------------------------------------------------------ embedding
    def embed(
        self,
        wav: AudioSource | Sequence[AudioSource],
        sr: int | None = None,
        *,
        pooling: str | None = None,
        return_frames: bool = False,
        batch_size: int = 32,
        progress: bool = False,
        channels_first: bool = False,
    ) -> Any:
        """Embed one clip or a batch of clips (input rules in the module docstring).

        Args:
            wav: a path, a list of paths/1-D arrays, or a numpy array / torch tensor ``(N,)`` or ``(B, N)``
                (``(C, N)`` with ``channels_first=True``).
            sr: sample rate of array input (required for arrays; files carry their own).
            pooling: ``"mean"`` -> ``(D,)``; ``"mean+max"`` -> ``(2D,)``; ``"freqcat"`` -> ``(F_p * D,)``;
                ``"freqcat+std"`` -> ``(2 * F_p * D,)``; ``"none"`` -> frame embeddings ``(T', D)``; ``None``: the
                model's own read-out, :attr:`pooling`.
            return_frames: also return frame embeddings and their centre timestamps in seconds.
            batch_size: windows per encoder forward pass (windows of different clips share a batch).
            progress: show a tqdm progress bar over clips.
            channels_first: treat a 2-D array as one multichannel clip instead of a batch.

        Returns:
            For one clip: float32 numpy ``(W,)``, where ``W`` is :meth:`pooled_dim` of the pooling, or ``(T', D)``
            for ``"none"``. For a batch: ``(B, W)``, or a list of ``(T'_i, D)`` for ``"none"``. With
            ``return_frames=True``: a tuple ``(embeddings, frames, timestamps_s)``, where frames/timestamps are
            ``(T', D)`` / ``(T',)`` for one clip and lists of those for a batch.

        Raises:
            AudioInputError: unreadable file, bad array shape/dtype, missing ``sr`` for arrays.
            ValueError: unknown ``pooling`` or a non-positive ``batch_size``.
        """
        pooling = self.pooling if pooling is None else pooling
        _check_pooling(pooling)
        sources, single = _as_sources(wav, sr, channels_first)
        feats = list(self.iter_features((self._load(s, sr) for s in sources), batch_size=batch_size,
                                        pooling=pooling, progress=progress, total=len(sources)))
        return _format(feats, pooling, return_frames, single)

    def iter_features(
        self,
        waveforms: Iterable[Tensor],
        *,
        batch_size: int = 32,
        pooling: str = "mean",
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[ClipFeatures]:
        """Stream per-clip features for mono waveforms already at :attr:`sample_rate`, in input order.

        Waveforms are consumed lazily (a generator that reads files keeps only about ``batch_size`` windows of audio
        in memory); windows of consecutive clips are packed into shared batches. Used by :meth:`embed`, the CLI and
        the HEAR wrapper; results have ``.col_mean`` (frames), ``.times`` and ``.pooled(pooling)``, where
        ``pooling`` (one of :data:`POOLINGS`) selects which extra per-column features are kept.
        """
        _check_pooling(pooling)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="clip", desc="embedding")
        states: dict[int, _ClipState] = {}
        queue: deque[tuple[int, int, Tensor]] = deque()  # (clip id, window index, window samples)
        next_out = 0
        n_clips = 0
        try:
            for clip_id, wav in enumerate(waveforms):
                n_clips += 1
                states[clip_id] = self._plan(wav, clip_id, queue, pooling)
                while len(queue) >= batch_size:
                    self._run_batch(queue, batch_size, states)
                    while next_out in states and states[next_out].remaining == 0:
                        yield self._finish(states.pop(next_out))
                        next_out += 1
                        if bar is not None:
                            bar.update(1)
            while queue:
                self._run_batch(queue, batch_size, states)
            while next_out < n_clips:
                yield self._finish(states.pop(next_out))
                next_out += 1
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    # ------------------------------------------------------------------ internals
    def _load(self, source: AudioSource, sr: int | None) -> Tensor:
        is_path = isinstance(source, (str, os.PathLike))
        return load_audio(source, sr=None if is_path else sr, target_sr=self.sample_rate)

    def _plan(self, wav: Tensor, clip_id: int, queue: deque, pooling: str) -> _ClipState:
        """Cut one waveform into windows (appended to ``queue``) and make its result accumulator."""
        if wav.ndim != 1 or wav.numel() == 0:
            raise AudioInputError(f"clip {clip_id}: expected a non-empty mono waveform (N,), got {tuple(wav.shape)}")
        n_windows = self.num_windows(wav.numel())
        for w in range(n_windows):
            start = w * self._window_hop
            queue.append((clip_id, w, wav[start:start + self._clip_samples]))
        n_cols = (n_windows - 1) * self._hop_cols + self._grid[1]
        return _ClipState(n_windows, n_cols, self.embed_dim, self._grid[0], pooling)

    @torch.inference_mode()
    def _run_batch(self, queue: deque, batch_size: int, states: dict[int, _ClipState]) -> None:
        items = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
        device = self.device
        lengths = torch.tensor([len(x) for _, _, x in items], dtype=torch.long)
        batch = torch.zeros(len(items), self._clip_samples)
        for i, (_, _, x) in enumerate(items):
            batch[i, : len(x)] = x
        batch = batch.to(device)

        spec = self.frontend(batch)  # float32 even under bf16: the log-mel needs the precision
        tokens, grid = patchify(spec, self.patch)
        token_ok = valid_tokens(self.frontend.valid_frames(lengths.to(device), spec.shape[-1]), grid, self.patch)
        amp = (torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 and device.type in ("cuda", "cpu")
               else contextlib.nullcontext())
        with amp:
            out = self.encoder.forward_layers(tokens, grid, self.average_layers)
        b, (f_p, t_p) = out.shape[0], grid
        # Time-major token order: n = t * F_p + f, so a (T_p, F_p) view groups each time column.
        out = out.float().view(b, t_p, f_p, -1)
        ok = token_ok.view(b, t_p, f_p)
        count = ok.sum(-1)
        col_mean = ((out * ok[..., None]).sum(2) / count.clamp(min=1)[..., None]).cpu()
        # All clips of one iter_features call share the pooling: compute and copy back only what it keeps.
        first = states[items[0][0]]
        col_max = out.masked_fill(~ok[..., None], -math.inf).amax(2).cpu() if first.col_max is not None else None
        col_cat = out.reshape(b, t_p, f_p * out.shape[-1]).cpu() if first.col_cat is not None else None
        count = count.cpu()

        centrality = (torch.arange(t_p) + 0.5 - t_p / 2).abs()
        for i, (clip_id, w, _) in enumerate(items):
            st = states[clip_id]
            cols = torch.arange(t_p) + w * self._hop_cols
            take = (count[i] > 0) & (centrality < st.distance[cols])
            idx = cols[take]
            st.distance[idx] = centrality[take]
            st.col_mean[idx] = col_mean[i, take]
            st.col_count[idx] = count[i, take]
            if st.col_max is not None:
                st.col_max[idx] = col_max[i, take]
            if st.col_cat is not None:
                st.col_cat[idx] = col_cat[i, take]
            st.remaining -= 1

    def _finish(self, st: _ClipState) -> ClipFeatures:
        cols = torch.nonzero(st.col_count > 0).flatten()
        # Kaldi snip-edges framing: frame k spans [k*hop, k*hop + win) samples; a column is patch_t frames.
        pt = self.patch[1]
        centre_samples = (cols.double() * pt + (pt - 1) / 2) * self._hop + self._win / 2
        return ClipFeatures(
            col_mean=st.col_mean[cols],
            col_max=None if st.col_max is None else st.col_max[cols],
            col_count=st.col_count[cols],
            col_cat=None if st.col_cat is None else st.col_cat[cols],
            times=(centre_samples / self.sample_rate).numpy(),
        )


# ---------------------------------------------------------------------- loading
def load(
    path: str | os.PathLike | None = None,
    *,
    encoder: str | None = None,
    device: str | torch.device | None = None,
    bf16: bool = False,
    average_layers: int | str | None = None,
    pooling: str | None = None,
) -> Embedder:
    """Load an embedder from an exported model or a training checkpoint; no ``path`` loads the shipped default.

    Args:
        path: an exported folder (``model.safetensors`` + ``config.json``), a ``<name>.safetensors`` with
            ``<name>.json`` beside it (or that JSON), or a training checkpoint ``.pt`` (docs/CONTRACTS.md).
            ``None``: the default encoder inside the package (:mod:`ajepa.pretrained`, docs/MODEL_CARD.md),
            read from disk with no download.
        encoder: which encoder of a training checkpoint: ``"target"`` (the EMA target encoder: the smoother,
            better-evaluating representation in I-JEPA-style training, and what computed the targets) or
            ``"context"``. ``None`` takes the target encoder, or the only encoder the file holds (an MAE run's
            context encoder, an export's one encoder); naming an encoder that is not there is an error.
        device: where to run; ``None`` picks CUDA, then MPS, then CPU.
        bf16: bfloat16 autocast for the encoder on CUDA/CPU (see :class:`Embedder`).
        average_layers: embed with the mean of the encoder's last ``average_layers`` hidden states, an int in
            ``1..depth + 1`` or ``"all"`` (see :class:`Embedder`). ``None``: the model's recorded read-out.
        pooling: the default clip pooling of :meth:`Embedder.embed`. ``None``: the model's recorded read-out.

    A model file without a recorded read-out (a training checkpoint, an export written before read-outs were
    recorded) gets mean pooling of the final block, as before, and says so in one log line.

    Raises:
        CheckpointError: missing file, unknown format or version, bad config, or weights whose names/shapes do not
            match the configured encoder.
        ValueError: ``average_layers`` outside ``1..depth + 1`` of the loaded encoder, or an unknown ``pooling``.
    """
    from ajepa.export import LEGACY_READOUT, read_export, read_training_checkpoint

    if encoder is not None and encoder not in ENCODER_CHOICES:
        raise ValueError(f"encoder must be one of {ENCODER_CHOICES}, got {encoder!r}")
    if path is None:
        from ajepa.pretrained import default_model_path

        path = default_model_path()
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in (".safetensors", ".json"):
        state, cfg = read_export(path)
        if encoder is not None and encoder != cfg["source_encoder"]:
            raise CheckpointError(
                f"{path}: this export holds the {cfg['source_encoder']} encoder, not the {encoder} encoder; "
                f"export the other one from the training checkpoint with --encoder {encoder}"
            )
    else:
        state, cfg = read_training_checkpoint(path, encoder)
    readout = cfg["readout"]
    if readout is None:
        readout = LEGACY_READOUT
        if pooling is None or average_layers is None:
            log.info("%s records no read-out: %s pooling of the final block unless pooling= / average_layers= "
                     "say otherwise (exports record the recommended read-out)", path, readout["pooling"])
    try:
        vit = ViTEncoder(cfg["encoder"])
        _load_state(vit, state, path)
        # Weights stored in another float dtype are copied into the module's own float32 parameters.
        return Embedder(LogMelFrontend(cfg["frontend"]), vit, clip_seconds=cfg["clip_seconds"],
                        source_encoder=cfg["source_encoder"], device=device, bf16=bf16,
                        average_layers=readout["average_layers"] if average_layers is None else average_layers,
                        pooling=readout["pooling"] if pooling is None else pooling)
    except (ConfigError, AudioInputError) as exc:  # settings that cannot build a working model
        raise CheckpointError(f"{path}: unusable model settings ({exc})") from None


def _load_state(vit: ViTEncoder, state: dict[str, Tensor], path: Path) -> None:
    expected = vit.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the configured encoder "
            f"(missing {len(missing)}: {missing[:3]}, unexpected {len(unexpected)}: {unexpected[:3]})"
        )
    for key, ref in expected.items():
        got = state[key]
        if not isinstance(got, Tensor) or tuple(got.shape) != tuple(ref.shape):
            shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
            raise CheckpointError(f"{path}: weight {key!r} has shape {shape}, the config needs {tuple(ref.shape)}")
        if not got.is_floating_point():
            raise CheckpointError(f"{path}: weight {key!r} has dtype {got.dtype}, expected a float tensor")
    vit.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------- functional API
def embed(
    wav: AudioSource | Sequence[AudioSource],
    sr: int | None = None,
    *,
    model: Embedder | str | os.PathLike | None = None,
    pooling: str | None = None,
    return_frames: bool = False,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    channels_first: bool = False,
    progress: bool = False,
) -> Any:
    """Embed audio with ``model`` (an :class:`Embedder`, a path for :func:`load`, or ``None`` for the shipped
    default encoder); see :meth:`Embedder.embed`. ``pooling=None`` uses the model's recorded read-out.

    ``device`` applies when ``model`` is a path or ``None``. For repeated calls load once with :func:`load` and pass
    the Embedder: a path (and the default model) is re-read on every call (no hidden global cache).
    """
    if not isinstance(model, Embedder):
        model = load(model, device=device)
    elif device is not None and pick_device(device) != model.device:
        raise ValueError(f"device={device!r} applies to a model path; move the Embedder with .to({str(device)!r})")
    return model.embed(wav, sr, pooling=pooling, return_frames=return_frames, batch_size=batch_size,
                       progress=progress, channels_first=channels_first)


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def _as_sources(wav: Any, sr: int | None, channels_first: bool) -> tuple[list[AudioSource], bool]:
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


def _format(feats: list[ClipFeatures], pooling: str, return_frames: bool, single: bool) -> Any:
    if pooling == "none":
        emb: Any = [f.col_mean.numpy() for f in feats]
    else:
        emb = np.stack([f.pooled(pooling).numpy() for f in feats]).astype(np.float32, copy=False)
    frames = [f.col_mean.numpy() for f in feats]
    times = [f.times for f in feats]
    if single:
        emb, frames, times = emb[0], frames[0], times[0]
    return (emb, frames, times) if return_frames else emb
