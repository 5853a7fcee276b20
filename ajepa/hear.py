"""The HEAR benchmark API (Holistic Evaluation of Audio Representations) for ajepa models.

Use ``ajepa.hear`` as the HEAR module name with the path of an exported model or a training checkpoint::

    import ajepa.hear as hear
    model = hear.load_model("my_model/")                  # or "" with AJEPA_MODEL=/path/to/model set
    scene = hear.get_scene_embeddings(audio, model)        # audio (n_sounds, n_samples) at model.sample_rate
    emb, ts = hear.get_timestamp_embeddings(audio, model)  # (n_sounds, T, D), (n_sounds, T) in ms

- Scene embeddings are the mean over all valid tokens (``pooling="mean"``), size ``D``.
- Timestamp embeddings are the frame embeddings of :mod:`ajepa.inference`: one per patch time column (mean over its
  frequency tokens), every 160 ms at the default 10 ms hop and 16-frame patches, stamped at the column centre.
- The model is a ``torch.nn.Module``: ``model.to(device)`` moves it, and results come back on the model's device.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from ajepa.errors import AudioInputError, CheckpointError
from ajepa.inference import ClipFeatures, Embedder, load

__all__ = ["HearModel", "load_model", "get_scene_embeddings", "get_timestamp_embeddings", "MODEL_ENV_VAR"]

MODEL_ENV_VAR = "AJEPA_MODEL"


class HearModel(nn.Module):
    """An :class:`Embedder` with the attributes the HEAR API asks for.

    Attributes:
        sample_rate: the rate audio must be given at (16000).
        scene_embedding_size: ``D``.
        timestamp_embedding_size: ``D``.
        batch_size: windows per encoder forward pass.
    """

    def __init__(self, embedder: Embedder, batch_size: int = 32) -> None:
        super().__init__()
        self.embedder = embedder
        # Registered as submodules so that nn.Module.to / .cuda / .eval reach the weights.
        self.frontend = embedder.frontend
        self.encoder = embedder.encoder
        self.sample_rate: int = embedder.sample_rate
        self.scene_embedding_size: int = embedder.embed_dim
        self.timestamp_embedding_size: int = embedder.embed_dim
        self.batch_size = batch_size
        self.eval()

    @property
    def device(self) -> torch.device:
        """Where the encoder (and the returned embeddings) live."""
        return self.embedder.device


def load_model(model_file_path: str = "", device: str | torch.device | None = None) -> HearModel:
    """Load an ajepa model for HEAR.

    Args:
        model_file_path: an exported model (folder or ``.safetensors``) or a training checkpoint ``.pt``. Empty: the
            path in the environment variable ``AJEPA_MODEL`` is used (HEAR harnesses often call ``load_model()``
            without arguments). ajepa ships no default weights, so with neither an error is raised.
        device: where to run; ``None`` picks CUDA, then MPS, then CPU.

    Raises:
        CheckpointError: no path given and ``AJEPA_MODEL`` unset, or the file is not a valid ajepa model.
    """
    path = model_file_path or os.environ.get(MODEL_ENV_VAR, "")
    if not path:
        raise CheckpointError(
            f"ajepa.hear.load_model needs a model path (ajepa has no default weights): pass "
            f"load_model('path/to/model') or set the environment variable {MODEL_ENV_VAR}"
        )
    return HearModel(load(path, device=device))


def get_scene_embeddings(audio: Tensor, model: HearModel) -> Tensor:
    """``audio (n_sounds, n_samples)`` at ``model.sample_rate`` -> ``(n_sounds, scene_embedding_size)`` float32."""
    feats = _features(audio, model)
    return torch.stack([f.pooled("mean") for f in feats]).to(model.device)


def get_timestamp_embeddings(audio: Tensor, model: HearModel) -> tuple[Tensor, Tensor]:
    """Frame embeddings and their centre times.

    Returns:
        ``embeddings (n_sounds, n_timestamps, timestamp_embedding_size)`` float32 and ``timestamps
        (n_sounds, n_timestamps)`` float32 in milliseconds, regularly spaced, both on the model's device.
    """
    feats = _features(audio, model)
    emb = torch.stack([f.col_mean for f in feats])
    times = torch.stack([torch.from_numpy(f.times * 1000.0).float() for f in feats])
    return emb.to(model.device), times.to(model.device)


def _features(audio: Tensor, model: HearModel) -> list[ClipFeatures]:
    if not isinstance(audio, Tensor) or audio.ndim != 2 or not audio.is_floating_point():
        shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
        raise AudioInputError(f"HEAR audio must be a float tensor (n_sounds, n_samples), got {shape}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise AudioInputError(f"HEAR audio {tuple(audio.shape)} is empty")
    audio = audio.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(audio).all()):
        raise AudioInputError("HEAR audio contains NaN or infinite samples")
    # Equal-length rows give equal numbers of frames, so the results stack.
    return list(model.embedder.iter_features(iter(audio), batch_size=model.batch_size))
