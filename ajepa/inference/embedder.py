"""The :class:`Embedder`: a frozen front end and encoder that embeds audio of any length (rules in
:mod:`ajepa.inference`)."""

from __future__ import annotations

import contextlib
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ajepa.features.logmel import FrontendConfig, LogMelFrontend
from ajepa.features.tokenizer import AudioTokenizer
from ajepa.inference.inputs import AudioSource, as_sources, format_output, read_source
from ajepa.inference.pooling import (
    AVERAGE_ALL,
    CLIP_POOLINGS,
    ClipFeatures,
    check_pooling,
    pooled_width,
    resolve_average_layers,
)
from ajepa.inference.windows import ClipState, WindowPlan
from ajepa.model_files import EXPORT_FORMAT, EXPORT_VERSION, write_export
from ajepa.models.sizes import EncoderConfig
from ajepa.models.vit import ViTEncoder
from ajepa.runtime import cpu_has_native_bf16

__all__ = ["Embedder", "pick_device"]


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
        bf16: run the encoder under bfloat16 autocast: ``True``, ``False`` or ``"auto"`` (the default of
            :func:`ajepa.load`): bf16 on CUDA and on CPUs that compute bf16 natively (AVX512-BF16, AMX), where
            it was measured 2.1-2.4x faster than fp32 for tiny and small encoders (docs/BENCHMARKS.md), fp32 on
            other CPUs (where emulated bf16 is slower) and on MPS. Clip embeddings stay within cosine 0.999 of
            fp32 (``tests/test_inference.py``). :meth:`from_config` (random baselines) and the evaluations use
            fp32, so that their figures do not depend on the CPU.
    """

    def __init__(
        self,
        frontend: LogMelFrontend,
        encoder: ViTEncoder,
        *,
        clip_seconds: float,
        source_encoder: str = "target",
        device: str | torch.device | None = None,
        bf16: bool | str = "auto",
        average_layers: int | str = 1,
        pooling: str = "mean",
    ) -> None:
        cfg: FrontendConfig = frontend.cfg
        if pooling not in CLIP_POOLINGS:
            raise ValueError(f"the default pooling must be one of {CLIP_POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.encoder = encoder
        self.encoder_config: EncoderConfig = encoder.cfg
        self.frontend_config = cfg
        self.sample_rate = int(cfg.sample_rate)
        self.embed_dim = int(self.encoder_config.embed_dim)
        self.patch: tuple[int, int] = tuple(self.encoder_config.patch)  # type: ignore[assignment]
        self.source_encoder = source_encoder
        if bf16 not in (True, False, "auto"):
            raise ValueError(f"bf16 must be True, False or 'auto', got {bf16!r}")
        self.bf16 = bf16
        self.average_layers = resolve_average_layers(average_layers, self.encoder_config.depth)
        self.clip_seconds = float(clip_seconds)

        self.tokenizer = AudioTokenizer(frontend, self.patch)
        self.plan = WindowPlan(self.tokenizer, self.clip_seconds)
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
                   average_layers=average_layers, bf16=False)

    @property
    def frontend(self) -> LogMelFrontend:
        """The :class:`LogMelFrontend` (normalisation statistics of the training data included)."""
        return self.tokenizer.frontend

    def uses_bf16(self, device: torch.device | None = None) -> bool:
        """Whether the encoder runs under bf16 autocast on ``device`` (default: where it is now)."""
        device = self.device if device is None else device
        if device.type not in ("cuda", "cpu"):
            return False
        if self.bf16 == "auto":
            return device.type == "cuda" or cpu_has_native_bf16()
        return bool(self.bf16)

    def to(self, device: str | torch.device) -> "Embedder":
        """Move the model to ``device`` (in place) and return ``self``."""
        self.frontend.to(device)
        self.encoder.to(device)
        return self

    def pooled_dim(self, pooling: str) -> int:
        """Width of a clip embedding under ``pooling`` (see :data:`POOLINGS`; ``"none"`` gives frame width D)."""
        return pooled_width(pooling, self.embed_dim, self.plan.grid[0])

    @property
    def window_grid(self) -> tuple[int, int]:
        """``(F_p, T_p)``: the patch grid of one encoder window."""
        return self.plan.grid

    def num_windows(self, num_samples: int) -> int:
        """How many encoder windows a clip of ``num_samples`` samples (at :attr:`sample_rate`) is cut into."""
        return self.plan.num_windows(num_samples)

    @property
    def device(self) -> torch.device:
        """Where the encoder runs."""
        return next(self.encoder.parameters()).device

    def export_config(self) -> dict[str, Any]:
        """The ``config.json`` content of an exported model (:mod:`ajepa.model_files`).

        The read-out (:attr:`pooling`, :attr:`average_layers`) is recorded as ``"readout"``, the model's recommended
        default for whoever loads it; ``bf16`` and the device are not part of it.
        """
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

    def save(self, out: str | os.PathLike, *, weights_dtype: str = "float32") -> Path:
        """Export to a folder (``model.safetensors`` + ``config.json``) or to ``<name>.safetensors`` + ``<name>.json``.

        ``weights_dtype``: ``"float32"``, ``"float16"`` (half the file) or ``"int8"`` (a quarter: per-channel int8
        matrices; clip embeddings within a cosine of 0.9999 for the default model). Loading computes in float32
        again. Returns the path of the ``.safetensors`` file. The result loads back with :func:`load`.
        """
        return write_export(self.encoder.state_dict(), self.export_config(), out, weights_dtype=weights_dtype)

    def __repr__(self) -> str:
        e = self.encoder_config
        return (f"Embedder(D={e.embed_dim}, depth={e.depth}, patch={self.patch}, clip_seconds={self.clip_seconds}, "
                f"sample_rate={self.sample_rate}, encoder={self.source_encoder!r}, pooling={self.pooling!r}, "
                f"average_layers={self.average_layers}, bf16={self.uses_bf16()}, device={self.device})")

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
        check_pooling(pooling)
        sources, single = as_sources(wav, sr, channels_first)
        feats = list(self.iter_features((read_source(s, sr, self.sample_rate) for s in sources),
                                        batch_size=batch_size, pooling=pooling, progress=progress, total=len(sources)))
        return format_output(feats, pooling, return_frames, single)

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
        check_pooling(pooling)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="clip", desc="embedding")
        states: dict[int, ClipState] = {}
        queue: deque[tuple[int, int, Tensor]] = deque()  # (clip id, window index, window samples)
        next_out = 0
        n_clips = 0
        try:
            for clip_id, wav in enumerate(waveforms):
                n_clips += 1
                queue.extend(self.plan.cut(wav, clip_id))
                states[clip_id] = self.plan.new_state(wav.numel(), self.embed_dim, pooling)
                while len(queue) >= batch_size:
                    self._run_batch(queue, batch_size, states)
                    while next_out in states and states[next_out].remaining == 0:
                        yield self.plan.finish(states.pop(next_out))
                        next_out += 1
                        if bar is not None:
                            bar.update(1)
            while queue:
                self._run_batch(queue, batch_size, states)
            while next_out < n_clips:
                yield self.plan.finish(states.pop(next_out))
                next_out += 1
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    # ------------------------------------------------------------------ internals
    @torch.inference_mode()
    def _run_batch(self, queue: deque, batch_size: int, states: dict[int, ClipState]) -> None:
        """Encode up to ``batch_size`` queued windows and hand each window's column features to its clip."""
        items = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
        device = self.device
        lengths = torch.tensor([len(x) for _, _, x in items], dtype=torch.long)
        batch = torch.zeros(len(items), self.plan.clip_samples)
        for i, (_, _, x) in enumerate(items):
            batch[i, : len(x)] = x
        tok = self.tokenizer(batch.to(device), lengths)
        amp = (torch.autocast(device.type, dtype=torch.bfloat16) if self.uses_bf16(device)
               else contextlib.nullcontext())
        with amp:
            out = self.encoder.forward_layers(tok.tokens, tok.grid, self.average_layers)
        b, (f_p, t_p) = out.shape[0], tok.grid
        # Time-major token order: n = t * F_p + f, so a (T_p, F_p) view groups each time column.
        out = out.float().view(b, t_p, f_p, -1)
        ok = tok.valid.view(b, t_p, f_p)
        count = ok.sum(-1)
        col_mean = ((out * ok[..., None]).sum(2) / count.clamp(min=1)[..., None]).cpu()
        # All clips of one iter_features call share the pooling: compute and copy back only what it keeps.
        first = states[items[0][0]]
        col_max = out.masked_fill(~ok[..., None], -math.inf).amax(2).cpu() if first.col_max is not None else None
        col_cat = out.reshape(b, t_p, f_p * out.shape[-1]).cpu() if first.col_cat is not None else None
        count = count.cpu()
        for i, (clip_id, w, _) in enumerate(items):
            states[clip_id].take(w * self.plan.hop_cols, col_mean[i], count[i],
                                 None if col_max is None else col_max[i], None if col_cat is None else col_cat[i])
