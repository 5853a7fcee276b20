"""The HEAR benchmark API (Holistic Evaluation of Audio Representations) for ajepa models.

Use ``ajepa.hear`` as the HEAR module name with the path of an exported model or a training checkpoint::

    import ajepa.hear as hear
    model = hear.load_model()                              # the shipped default; or a path, or AJEPA_MODEL=...
    scene = hear.get_scene_embeddings(audio, model)        # audio (n_sounds, n_samples) at model.sample_rate
    emb, ts = hear.get_timestamp_embeddings(audio, model)  # (n_sounds, T, D), (n_sounds, T) in ms

- Scene embeddings are the model's recorded read-out (``Embedder.pooling``, e.g. ``freqcat+std`` of the mean of
  every layer for the default model), size :attr:`HearModel.scene_embedding_size`.
- Timestamp embeddings are the frame embeddings of :mod:`ajepa.inference` (one per patch time column: the mean over
  its frequency tokens, stamped at the column centre), every ``timestamp_hop_ms`` (40 ms by default). A patch
  column spans 160 ms, so for a 40 ms hop the encoder also runs on the audio advanced by 40, 80 and 120 ms and the
  columns of the four runs are interleaved in time (HEAR asks for at most 50 ms so that onsets can be scored);
  ``timestamp_hop_ms=160`` gives the plain columns at a quarter of the cost.
- The model is a ``torch.nn.Module``: ``model.to(device)`` moves it, and results come back on the model's device.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from ajepa.errors import AudioInputError
from ajepa.features.audio import MAX_ABS_SAMPLE
from ajepa.inference import ClipFeatures, Embedder, load

__all__ = ["HearModel", "load_model", "get_scene_embeddings", "get_timestamp_embeddings", "MODEL_ENV_VAR"]

MODEL_ENV_VAR = "AJEPA_MODEL"


class HearModel(nn.Module):
    """An :class:`Embedder` with the attributes the HEAR API asks for.

    Attributes:
        sample_rate: the rate audio must be given at (16000).
        scene_embedding_size: the width of the embedder's read-out (``Embedder.pooled_dim(Embedder.pooling)``).
        timestamp_embedding_size: ``D``.
        batch_size: windows per encoder forward pass.
        timestamp_hop_ms: spacing of the timestamp embeddings (40 ms by default; 160 / k for k dividing 16).
    """

    def __init__(self, embedder: Embedder, batch_size: int = 32, timestamp_hop_ms: float = 40.0) -> None:
        super().__init__()
        # The stamps are evenly spaced only if each shift is a whole number of front-end hops: the hop must be a
        # patch column (16 hops) divided by a divisor of 16.
        hops_per_column = embedder.patch[1]
        column_ms = hops_per_column * embedder.frontend_config.hop_ms
        shifts = column_ms / timestamp_hop_ms if timestamp_hop_ms > 0 else 0.0
        if abs(shifts - round(shifts)) > 1e-9 or round(shifts) < 1 or hops_per_column % round(shifts):
            raise ValueError(f"timestamp_hop_ms must divide the {column_ms:g} ms patch column into whole front-end "
                             f"hops of {embedder.frontend_config.hop_ms:g} ms, got {timestamp_hop_ms}")
        self.timestamp_hop_ms = float(timestamp_hop_ms)
        self.n_shifts = int(round(shifts))
        self.shift_samples = int(round(embedder.sample_rate * timestamp_hop_ms / 1000.0))
        self.embedder = embedder
        # Registered as submodules so that nn.Module.to / .cuda / .eval reach the weights.
        self.frontend = embedder.frontend
        self.encoder = embedder.encoder
        self.sample_rate: int = embedder.sample_rate
        self.scene_embedding_size: int = embedder.pooled_dim(embedder.pooling)
        self.timestamp_embedding_size: int = embedder.embed_dim
        self.batch_size = batch_size
        self.eval()

    @property
    def device(self) -> torch.device:
        """Where the encoder (and the returned embeddings) live."""
        return self.embedder.device


def load_model(model_file_path: str = "", device: str | torch.device | None = None, *,
               timestamp_hop_ms: float = 40.0) -> HearModel:
    """Load an ajepa model for HEAR.

    Args:
        model_file_path: an exported model (folder or ``.safetensors``) or a training checkpoint ``.pt``. Empty: the
            path in the environment variable ``AJEPA_MODEL``, else the default model shipped with ajepa (HEAR
            harnesses often call ``load_model()`` without arguments).
        device: where to run; ``None`` picks CUDA, then MPS, then CPU.
        timestamp_hop_ms: spacing of the timestamp embeddings; it must divide the 160 ms patch column (40 by
            default, 160 for the plain columns).

    Raises:
        CheckpointError: the file is not a valid ajepa model.
    """
    path = model_file_path or os.environ.get(MODEL_ENV_VAR, "") or None
    return HearModel(load(path, device=device), timestamp_hop_ms=timestamp_hop_ms)


def get_scene_embeddings(audio: Tensor, model: HearModel) -> Tensor:
    """``audio (n_sounds, n_samples)`` at ``model.sample_rate`` -> ``(n_sounds, scene_embedding_size)`` float32."""
    _check_audio(audio)
    feats = _features(audio, model)
    return torch.stack([f.pooled(model.embedder.pooling) for f in feats]).to(model.device)


def get_timestamp_embeddings(audio: Tensor, model: HearModel) -> tuple[Tensor, Tensor]:
    """Frame embeddings and their centre times.

    Returns:
        ``embeddings (n_sounds, n_timestamps, timestamp_embedding_size)`` float32 and ``timestamps
        (n_sounds, n_timestamps)`` float32 in milliseconds, every ``model.timestamp_hop_ms``, both on the model's
        device.
    """
    _check_audio(audio)
    runs = []  # (frames (n_sounds, T_j, D), times (T_j,) ms) of the audio advanced by j shifts
    for j in range(model.n_shifts):
        start = j * model.shift_samples
        if start >= audio.shape[1]:
            break
        feats = _features(audio[:, start:], model, pooling="mean")
        runs.append((torch.stack([f.col_mean for f in feats]),
                     torch.from_numpy(feats[0].times * 1000.0 + 1000.0 * start / model.sample_rate)))
    # Column c of run j is centred at t_c + j * hop: interleave column-major and stop at the first column a shorter
    # (more advanced) run lacks, so that the stamps stay evenly spaced.
    order = []
    for c in range(runs[0][0].shape[1]):
        if any(c >= r[0].shape[1] for r in runs):
            break
        order += [(j, c) for j in range(len(runs))]
    emb = torch.stack([runs[j][0][:, c] for j, c in order], dim=1)
    times = torch.stack([runs[j][1][c] for j, c in order]).float()
    return emb.to(model.device), times.expand(audio.shape[0], -1).contiguous().to(model.device)


def _check_audio(audio: Tensor) -> None:
    if not isinstance(audio, Tensor) or audio.ndim != 2 or not audio.is_floating_point():
        shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
        raise AudioInputError(f"HEAR audio must be a float tensor (n_sounds, n_samples), got {shape}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise AudioInputError(f"HEAR audio {tuple(audio.shape)} is empty")
    if not bool(torch.isfinite(audio).all()):
        raise AudioInputError("HEAR audio contains NaN or infinite samples")
    peak = float(audio.abs().max())
    if peak > MAX_ABS_SAMPLE:
        raise AudioInputError(f"HEAR audio reaches {peak:.3g}, which overflows the log-mel front end (expected "
                              f"[-1, 1]; at most {MAX_ABS_SAMPLE:.0e})")


def _features(audio: Tensor, model: HearModel, pooling: str | None = None) -> list[ClipFeatures]:
    """Features of audio already checked by :func:`_check_audio` (the public functions check once)."""
    audio = audio.detach().to("cpu", torch.float32)
    # Equal-length rows give equal numbers of frames, so the results stack.
    return list(model.embedder.iter_features(iter(audio), batch_size=model.batch_size,
                                             pooling=pooling or model.embedder.pooling))


def validate_main(argv: list[str] | None = None) -> int:
    """``ajepa hear-validate [MODEL] [--device cpu]`` / ``python -m ajepa.hear validate``: the HEAR 2021 validator
    on this module and MODEL (default: ``$AJEPA_MODEL``, else the shipped default model).

    torch is imported before the validator pulls in TensorFlow: the other order crashes the process on some
    machines, which is why ``hear-validator ajepa.hear`` typed by hand can segfault.
    """
    import argparse

    p = argparse.ArgumentParser(prog="ajepa hear-validate", description=validate_main.__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", default="", help="exported model or checkpoint (default: the shipped one)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from ajepa.extras import require

    require("tensorflow", "hear", "tensorflow-cpu")
    validate = require("hearvalidator.validate", "hear", "hearvalidator")
    validate.ValidateModel("ajepa.hear", args.model, device=args.device)()
    print("ajepa.hear passes the HEAR 2021 validator")
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["validate"]:
        print("usage: python -m ajepa.hear validate [MODEL] [--device cpu]", file=sys.stderr)
        sys.exit(2)
    sys.exit(validate_main(sys.argv[2:]))
