"""The :class:`Embedder`: a frozen front end and encoder that embeds audio of any length (rules in
:mod:`ajepa.inference`)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ajepa.errors import AudioInputError
from ajepa.features.logmel import FrontendConfig, LogMelFrontend
from ajepa.features.tokenizer import AudioTokenizer
from ajepa.inference.inputs import AudioSource, as_sources, format_output, read_source
from ajepa.inference.model_card import write_model_card
from ajepa.inference.model_files import EXPORT_FORMAT, EXPORT_VERSION, write_export
from ajepa.inference.readout import CLIP_POOLINGS, ClipFeatures, Readout, resolve_average_layers
from ajepa.inference.windows import ClipState, WindowPlan
from ajepa.models.sizes import EncoderConfig
from ajepa.models.vit import ViTEncoder, mean_of_layers
from ajepa.runtime import cpu_has_native_bf16

__all__ = ["Embedder", "pick_device"]

log = logging.getLogger("ajepa.inference")


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


class Embedder(nn.Module):
    """A frozen log-mel front end + ViT encoder that embeds audio of any length (see the module docstring).

    An ``nn.Module``: calling it on a batch of waveforms returns clip embeddings as a tensor (:meth:`forward`);
    :meth:`embed` takes every input kind (paths, folders, arrays, lists) and returns numpy.

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
        license: str = "unknown",
    ) -> None:
        super().__init__()
        self.license = str(license)  # the terms the weights carry (from their training data); exports record it
        cfg: FrontendConfig = frontend.cfg
        if pooling not in CLIP_POOLINGS:
            raise ValueError(f"the default pooling must be one of {CLIP_POOLINGS}, got {pooling!r}")
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
        # The default read-out, its layer count resolved against this encoder (ValueError when out of range).
        self.readout = Readout(pooling, resolve_average_layers(average_layers, self.encoder_config.depth))
        self.clip_seconds = float(clip_seconds)

        self.frontend = frontend  # a submodule, so .to(), .state_dict() and .eval() reach it
        self.tokenizer = AudioTokenizer(frontend, self.patch)
        self.plan = WindowPlan(self.tokenizer, self.clip_seconds)
        self.to(pick_device(device))
        self.eval()

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
        # Random weights saw no data: they carry only the code's terms.
        return cls(LogMelFrontend(frontend), vit, clip_seconds=clip_seconds, source_encoder="random", device=device,
                   average_layers=average_layers, bf16=False, license="Apache-2.0")

    @property
    def pooling(self) -> str:
        """The clip pooling :meth:`embed` uses when none is given (the model's recorded read-out)."""
        return self.readout.pooling

    @property
    def average_layers(self) -> int:
        """How many last hidden states are averaged into the token embeddings (``1..depth + 1``)."""
        return int(self.readout.average_layers)

    def uses_bf16(self, device: torch.device | None = None) -> bool:
        """Whether the encoder runs under bf16 autocast on ``device`` (default: where it is now)."""
        device = self.device if device is None else device
        if device.type not in ("cuda", "cpu"):
            return False
        if self.bf16 == "auto":
            return device.type == "cuda" or cpu_has_native_bf16()
        return bool(self.bf16)

    @property
    def sampling_rate(self) -> int:
        """The rate (Hz) every input is resampled to (the name benchmark kits such as X-ARES ask for)."""
        return self.sample_rate

    @property
    def output_dim(self) -> int:
        """The width of what :meth:`embed` (and calling the embedder) returns for one clip with its own read-out."""
        return self.pooled_dim(self.pooling)

    def forward(self, audio: Tensor | np.ndarray, sr: int | None = None) -> Tensor:
        """``audio (B, N)`` (or ``(N,)``) at ``sr`` (default :attr:`sampling_rate`) -> clip embeddings
        ``(B, output_dim)`` (or ``(output_dim,)``) as a tensor on the embedder's device, without gradients: the
        embedder as a module, e.g. inside another model."""
        audio = audio.detach().cpu() if isinstance(audio, Tensor) else audio
        out = self.embed(audio, self.sample_rate if sr is None else sr)
        return torch.from_numpy(out).to(self.device)

    def pooled_dim(self, pooling: str) -> int:
        """Width of a clip embedding under ``pooling`` (see :data:`POOLINGS`; ``"none"`` gives frame width D)."""
        return self.readout.with_pooling(pooling).width(self.embed_dim, self.plan.grid[0])

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
        """The ``config.json`` content of an exported model (:mod:`ajepa.inference.model_files`).

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
            "readout": self.readout.to_config(self.encoder_config.depth),
            "license": self.license,
        }

    def save(self, out: str | os.PathLike, *, weights_dtype: str = "float32", training: dict[str, Any] | None = None,
             figures: str | None = None) -> Path:
        """Export to a folder (``model.safetensors`` + ``config.json`` + ``README.md``, the model card) or to
        ``<name>.safetensors`` + ``<name>.json``.

        ``weights_dtype``: ``"float32"``, ``"float16"`` (half the file) or ``"int8"`` (a quarter: per-channel int8
        matrices; clip embeddings within a cosine of 0.9999 for the default model). Loading computes in float32
        again. ``training`` (a checkpoint's run config) and ``figures`` (Markdown) go into the model card. Returns
        the path of the ``.safetensors`` file. The result loads back with :func:`load`.
        """
        config = self.export_config()
        weights = write_export(self.encoder.state_dict(), config, out, weights_dtype=weights_dtype)
        if Path(out).suffix.lower() not in (".safetensors", ".json"):  # a folder export: the card beside the weights
            write_model_card(weights.parent, config, training, figures)
        return weights

    def save_pretrained(self, folder: str | os.PathLike, **kwargs: Any) -> Path:
        """The Hugging Face ``ModelHubMixin`` shape of :meth:`save`: an export folder that
        :func:`ajepa.from_pretrained` reads back (offline; upload it with ``huggingface_hub`` where a network is)."""
        self.save(folder, **kwargs)
        return Path(folder)

    def __repr__(self) -> str:
        e = self.encoder_config
        return (f"Embedder(output_dim={self.output_dim}, D={e.embed_dim}, depth={e.depth}, patch={self.patch}, "
                f"clip_seconds={self.clip_seconds}, "
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
        on_error: str = "raise",
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
            on_error: ``"raise"``: the first input that cannot be embedded raises, naming it. ``"skip"``: inputs that
                cannot be read are left out and the call returns ``(result, failed)``, ``result`` as below for the
                inputs that worked (``None`` for a single input that failed) and ``failed`` a list of
                ``(input index, reason)``. (A long file that breaks after its first windows still raises.)

        Returns:
            For one clip: float32 numpy ``(W,)``, where ``W`` is :meth:`pooled_dim` of the pooling, or ``(T', D)``
            for ``"none"``. For a batch: ``(B, W)``, or a list of ``(T'_i, D)`` for ``"none"``. With
            ``return_frames=True``: a tuple ``(embeddings, frames, timestamps_s)``, where frames/timestamps are
            ``(T', D)`` / ``(T',)`` for one clip and lists of those for a batch.

        Raises:
            AudioInputError: unreadable file, bad array shape/dtype, missing ``sr`` for arrays.
            ValueError: unknown ``pooling`` or a non-positive ``batch_size``.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        readout = self.readout.with_pooling(pooling)
        sources, single = as_sources(wav, sr, channels_first)
        failed: list[tuple[int, str]] = []

        def readable() -> Iterator[Tensor]:
            for i, source in enumerate(sources):
                try:
                    yield read_source(source, sr, self.sample_rate)
                except AudioInputError as exc:
                    if on_error == "raise":
                        raise
                    failed.append((i, str(exc)))

        feats = list(self.iter_features(readable(), batch_size=batch_size, pooling=readout.pooling,
                                        progress=progress, total=len(sources)))
        if on_error == "raise":
            return format_output(feats, readout, return_frames, single)
        if failed:
            log.warning("%d of %d input(s) could not be embedded and were skipped, e.g. %s", len(failed),
                        len(sources), failed[0][1])
        if not feats:  # nothing worked: None for one input, an empty batch for several
            empty: Any = [] if readout.pooling == "none" else np.zeros((0, self.pooled_dim(readout.pooling)),
                                                                          np.float32)
            result = None if single else ((empty, [], []) if return_frames else empty)
            return result, failed
        return format_output(feats, readout, return_frames, single), failed

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
        in memory, and a :class:`~ajepa.inference.inputs.StreamedAudio` is read window by window); windows of
        consecutive clips are packed into shared batches. Used by :meth:`embed`, the CLI and
        the HEAR wrapper; results have ``.col_mean`` (frames), ``.times`` and ``.pooled(pooling)``, where
        ``pooling`` (one of :data:`POOLINGS`) selects which extra per-column features are kept.
        """
        readout = self.readout.with_pooling(pooling)
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
                states[clip_id] = self.plan.new_state(wav.numel(), self.embed_dim, readout)
                # Windows are cut as the batches need them: a long (streamed) file is never held whole.
                for window in self.plan.cut(wav, clip_id):
                    queue.append(window)
                    if len(queue) < batch_size:
                        continue
                    self._run_batch(queue, batch_size, states, readout)
                    while next_out in states and states[next_out].remaining == 0:
                        yield self.plan.finish(states.pop(next_out))
                        next_out += 1
                        if bar is not None:
                            bar.update(1)
            while queue:
                self._run_batch(queue, batch_size, states, readout)
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
    def _run_batch(self, queue: deque, batch_size: int, states: dict[int, ClipState], readout: Readout) -> None:
        """Encode up to ``batch_size`` queued windows and hand each window's column features to its clip."""
        items = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
        device = self.device
        lengths = torch.tensor([len(x) for _, _, x in items], dtype=torch.long)
        batch = torch.zeros(len(items), self.plan.clip_samples)
        for i, (_, _, x) in enumerate(items):
            batch[i, : len(x)] = x
        tok = self.tokenizer(batch.to(device), lengths)
        finite = torch.isfinite(tok.tokens).flatten(1).all(1)
        if not bool(finite.all()):  # load_audio bounds the samples; this is the last line of defence
            clip_id = items[int((~finite).nonzero()[0])][0]
            raise AudioInputError(f"clip {clip_id} of this call: its log-mel spectrogram is not finite")
        amp = (torch.autocast(device.type, dtype=torch.bfloat16) if self.uses_bf16(device)
               else contextlib.nullcontext())
        with amp:
            out = mean_of_layers(self.encoder.forward_intermediates(tok.tokens, tok.grid,
                                                                    readout.layers(self.encoder_config.depth)))
        b, (f_p, t_p) = out.shape[0], tok.grid
        # Time-major token order: n = t * F_p + f, so a (T_p, F_p) view groups each time column.
        columns = readout.column_features(out.float().view(b, t_p, f_p, -1), tok.valid.view(b, t_p, f_p))
        for i, (clip_id, w, _) in enumerate(items):
            states[clip_id].take(w * self.plan.hop_cols, columns, i)
