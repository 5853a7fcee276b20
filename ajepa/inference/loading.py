"""Loading an :class:`Embedder` from a model file, and the one-call :func:`embed`."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ajepa.errors import AudioInputError, CheckpointError, ConfigError
from ajepa.features.logmel import LogMelFrontend
from ajepa.inference.embedder import Embedder, pick_device
from ajepa.inference.inputs import AudioSource
from ajepa.inference.model_files import check_encoder_weights, read_model_file
from ajepa.inference.readout import LEGACY_READOUT
from ajepa.models.vit import ViTEncoder
from ajepa.pretrained import DEFAULT_LICENSE, MODELS, default_model_path

__all__ = ["ENCODER_CHOICES", "embed", "from_pretrained", "load"]

ENCODER_CHOICES = ("target", "context")

log = logging.getLogger("ajepa.inference")


def load(
    path: str | os.PathLike | None = None,
    *,
    encoder: str | None = None,
    device: str | torch.device | None = None,
    bf16: bool | str = "auto",
    average_layers: int | str | None = None,
    pooling: str | None = None,
) -> Embedder:
    """Load an embedder from an exported model or a training checkpoint; no ``path`` loads the shipped default.

    Args:
        path: an exported folder (``model.safetensors`` + ``config.json``), a ``<name>.safetensors`` with
            ``<name>.json`` beside it (or that JSON), or a training checkpoint ``.pt`` (:mod:`ajepa.inference.model_files`).
            ``None``: the default encoder inside the package (:mod:`ajepa.pretrained`, ajepa/pretrained/default/README.md),
            read from disk with no download.
        encoder: which encoder of a training checkpoint: ``"target"`` (the EMA target encoder: the smoother,
            better-evaluating representation in I-JEPA-style training, and what computed the targets) or
            ``"context"``. ``None`` takes the target encoder, or the only encoder the file holds (an MAE run's
            context encoder, an export's one encoder), or the context encoder of a run whose target encoder was
            a frozen teacher (``objective.teacher``); naming an encoder that is not there is an error.
        device: where to run; ``None`` picks CUDA, then MPS, then CPU.
        bf16: bfloat16 autocast for the encoder: ``"auto"`` (bf16 on CUDA and on CPUs with native bf16, where it
            is faster), ``True`` or ``False`` (see :class:`Embedder`).
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
    if encoder is not None and encoder not in ENCODER_CHOICES:
        raise ValueError(f"encoder must be one of {ENCODER_CHOICES}, got {encoder!r}")
    default = path is None or (isinstance(path, str) and path in MODELS)
    if path is None or default:
        path = default_model_path() if path in (None, "default") else MODELS[path]
        _announce_licence(DEFAULT_LICENSE)
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    state, cfg = read_model_file(path, encoder)
    readout = cfg["readout"]
    if readout is None:
        readout = LEGACY_READOUT
        if pooling is None or average_layers is None:
            log.info("%s records no read-out: %s pooling of the final block unless pooling= / average_layers= "
                     "say otherwise (exports record the recommended read-out)", path, readout.pooling)
    try:
        # The weights are checked against an encoder built on the meta device (shapes, no memory) first, so a
        # config that asks for more than its weights hold fails before anything of that size is allocated.
        check_encoder_weights(cfg["encoder"], state, path)
        vit = ViTEncoder(cfg["encoder"])
        vit.load_state_dict(state, strict=True)
        # Weights stored in another float dtype are copied into the module's own float32 parameters.
        return Embedder(LogMelFrontend(cfg["frontend"]), vit, clip_seconds=cfg["clip_seconds"],
                        source_encoder=cfg["source_encoder"], device=device, bf16=bf16, license=cfg["license"],
                        average_layers=readout.average_layers if average_layers is None else average_layers,
                        pooling=readout.pooling if pooling is None else pooling)
    except (ConfigError, AudioInputError) as exc:  # settings that cannot build a working model
        raise CheckpointError(f"{path}: unusable model settings ({exc})") from None


@functools.cache
def _announce_licence(license_id: str) -> None:
    """Say once per process which terms the shipped weights carry."""
    log.warning("the default ajepa weights carry %s terms (non-commercial: trained on ESC-50 audio); see "
                "ajepa/pretrained/default/LICENSE", license_id)


@functools.cache
def _default_embedder(device: str | None) -> Embedder:
    """The shipped default model, loaded once per process and device for :func:`embed` calls without a model."""
    return load(None, device=device)


def from_pretrained(name_or_path: str | os.PathLike, **kwargs: Any) -> Embedder:
    """An embedder from a model name (:func:`ajepa.list_models`), a local export folder or checkpoint, or a Hugging
    Face hub id (``"owner/name"``, downloaded where a network is; never needed offline). ``kwargs`` go to
    :func:`load`. The counterpart of :meth:`Embedder.save_pretrained`."""
    target = name_or_path
    if isinstance(target, str) and target not in MODELS and not Path(target).expanduser().exists() \
            and target.count("/") == 1 and not target.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download  # timm's dependency; reaches the network only here

        target = snapshot_download(repo_id=target)
    return load(target, **kwargs)


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
    on_error: str = "raise",
) -> Any:
    """Embed audio with ``model`` (an :class:`Embedder`, a path for :func:`load`, or ``None`` for the shipped
    default encoder); see :meth:`Embedder.embed`. ``pooling=None`` uses the model's recorded read-out.

    ``device`` applies when ``model`` is a path or ``None``. The default model is loaded once per process (and
    device) and reused; a path is read on every call, so for repeated calls load it once with :func:`load`.
    """
    if model is None:
        model = _default_embedder(None if device is None else str(device))
    elif not isinstance(model, Embedder):
        model = load(model, device=device)
    elif device is not None and pick_device(device) != model.device:
        raise ValueError(f"device={device!r} applies to a model path; move the Embedder with .to({str(device)!r})")
    return model.embed(wav, sr, pooling=pooling, return_frames=return_frames, batch_size=batch_size,
                       progress=progress, channels_first=channels_first, on_error=on_error)
