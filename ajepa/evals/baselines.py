"""Models and baselines behind one small interface (:class:`ajepa.evals.cache.ClipEmbedder`).

- :class:`LogMelStatsEmbedder`: mean and standard deviation over time of each mel band of the *unnormalised*
  log-mel (the project's own frontend), 2 x 128 = 256 dimensions. A classical, training-free floor.
- :func:`random_init_embedder`: an encoder of the same size with random weights
  (``ajepa.inference.Embedder.from_config``), the floor that isolates what pretraining adds.
  ``random:PATH[:SEED]`` (:func:`resolve_model`) builds it with the encoder, front end and ``clip_seconds``
  of a trained model, so that it differs from that model in nothing but the weights.
- :func:`load_model_embedder`: trained weights (``ajepa.inference.load``), cache-keyed by a hash of the
  weight files, so retrained weights never reuse stale embeddings.

Encoders (trained and random) take ``average_layers`` (``ajepa.inference.Embedder``: the mean of the last k block
outputs, ``"all"`` for every block and the patch embedding), so that a random baseline is read out exactly like the trained model it is
compared with; the log-mel statistics have no layers and ignore it.

``ajepa.features`` and ``ajepa.inference`` are imported lazily: the probes and readers work without them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = [
    "LogMelStatsEmbedder",
    "EmbedderAdapter",
    "random_init_embedder",
    "load_model_embedder",
    "random_like_model",
    "weights_fingerprint",
    "resolve_model",
    "resolve_baseline",
]


class LogMelStatsEmbedder:
    """Per-band mean and std over the valid frames of the unnormalised log-mel -> ``(B, 2 * n_mels)``.

    Clips of a batch are zero-padded to the longest one; padded frames are excluded from the statistics
    via ``LogMelFrontend.valid_frames``, so the result does not depend on the batch composition.
    """

    fixed_pooling = True  # mean and std over time are this baseline's own pooling (see evals.cache.pooling_for)

    def __init__(self, frontend_config: Any = None, device: str | torch.device = "cpu") -> None:
        from ajepa.features.logmel import FrontendConfig, LogMelFrontend

        self.cfg = frontend_config if frontend_config is not None else FrontendConfig()
        self.frontend = LogMelFrontend(self.cfg, normalize=False).to(device).eval()
        self.device = torch.device(device)
        self.sample_rate = int(self.cfg.sample_rate)
        # norm_mean/std do not act on the unnormalised log-mel, so they are not part of the identity.
        ident = {k: v for k, v in asdict(self.cfg).items() if not k.startswith("norm_")}
        self.key = "logmel-stats:v1:" + json.dumps(ident, sort_keys=True)

    @torch.no_grad()
    def embed(self, paths: Sequence[str], *, pooling: str = "mean", batch_size: int = 32,
              progress: bool = True) -> np.ndarray:
        """``(len(paths), 2 * n_mels)`` float32: ``[mean per band, std per band]``.

        ``pooling`` must be ``"mean"``: the statistics are this baseline's own pooling over time.
        """
        if pooling != "mean":
            raise ValueError(f"the log-mel statistics baseline has fixed pooling; got pooling={pooling!r}")
        from tqdm.auto import tqdm

        from ajepa.features.audio import load_audio

        min_samples = int(round(self.cfg.win_ms * self.sample_rate / 1000))
        out = []
        for start in tqdm(range(0, len(paths), batch_size), desc="log-mel stats", unit="batch", disable=not progress):
            wavs = [load_audio(p, target_sr=self.sample_rate, min_samples=min_samples)
                    for p in paths[start : start + batch_size]]
            lengths = torch.tensor([len(w) for w in wavs], dtype=torch.int64)
            batch = torch.zeros(len(wavs), int(lengths.max()))
            for i, w in enumerate(wavs):
                batch[i, : len(w)] = w
            spec = self.frontend(batch.to(self.device)).float()  # (B, F, T)
            valid = self.frontend.valid_frames(lengths, spec.shape[-1]).to(spec.device)  # (B, T)
            w = valid[:, None, :].float()
            n = w.sum(-1).clamp_min(1.0)
            mean = (spec * w).sum(-1) / n
            var = (((spec - mean[..., None]) ** 2) * w).sum(-1) / n
            out.append(torch.cat([mean, var.sqrt()], dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)


class EmbedderAdapter:
    """Wraps an ``ajepa.inference.Embedder`` with the cache identity ``key`` of its weights.

    An embedder that averages its last k > 1 blocks (``average_layers``) gets ``:avg<k>`` appended to the key: the
    same weights then give other embeddings, which must never share a cache entry. k = 1 keeps the key, so cache
    entries made before the setting existed stay valid.
    """

    def __init__(self, embedder: Any, key: str) -> None:
        self.embedder = embedder
        k = embedder.average_layers
        self.key = key if k == 1 else f"{key}:avg{k}"
        self.sample_rate = int(embedder.sample_rate)

    def embed(self, paths: Sequence[str], *, pooling: str = "mean", batch_size: int = 32,
              progress: bool = True) -> np.ndarray:
        """``(len(paths), D)`` clip embeddings from ``Embedder.embed``."""
        emb = self.embedder.embed(list(paths), pooling=pooling, batch_size=batch_size, progress=progress)
        emb = np.asarray(emb, dtype=np.float32)
        return emb.reshape(len(paths), -1) if emb.ndim == 1 else emb


def _encoder_sizes() -> dict[str, Any]:
    from ajepa.models.sizes import ENCODER_SIZES

    return ENCODER_SIZES


def random_init_embedder(size: str | Any, *, seed: int = 0, clip_seconds: float = 2.0, frontend_config: Any = None,
                         device: str = "cpu", average_layers: int | str = 1) -> EmbedderAdapter:
    """A randomly initialised encoder; ``size`` is a name in ``ENCODER_SIZES`` or an ``EncoderConfig``."""
    from ajepa.features.logmel import FrontendConfig
    from ajepa.inference import Embedder

    if isinstance(size, str):
        sizes = _encoder_sizes()
        if size not in sizes:
            raise ValueError(f"unknown encoder size {size!r}; choose one of {sorted(sizes)}")
        cfg, name = sizes[size], size
    else:
        cfg = size
        name = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True, default=str).encode()).hexdigest()[:12]
    fe = frontend_config if frontend_config is not None else FrontendConfig()
    emb = Embedder.from_config(cfg, frontend=fe, clip_seconds=clip_seconds, seed=seed, device=device,
                               average_layers=average_layers)
    key = f"random-init:{name}:seed{seed}:clip{clip_seconds}"
    if fe != FrontendConfig():  # another front end (e.g. a trained model's normalisation) embeds differently
        key += ":fe" + hashlib.sha256(json.dumps(asdict(fe), sort_keys=True, default=str).encode()).hexdigest()[:12]
    return EmbedderAdapter(emb, key)


def weights_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 over the weight and config files of a model path (file, ``.safetensors`` + json, or folder)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        files = [path] + ([path.with_suffix(".json")] if path.with_suffix(".json").is_file() and path.suffix != ".json"
                          else [])
    else:
        raise FileNotFoundError(f"model not found: {path}")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _load_inference(path: str | os.PathLike, encoder: str | None, device: str, average_layers: int | str = 1
                    ) -> Any:
    """``ajepa.inference.load``; ``encoder=None`` takes the target encoder of a training checkpoint, or its
    only encoder (an MAE run's context encoder), or its student when the target encoder is a frozen teacher,
    and the one encoder of an export."""
    from ajepa.inference import load

    # fp32 always: the figures must not depend on whether this CPU computes bf16 natively.
    return load(path, encoder=encoder, device=device, average_layers=average_layers, bf16=False)


def load_model_embedder(path: str | os.PathLike, *, encoder: str | None = "target", device: str = "cpu",
                        average_layers: int | str = 1) -> EmbedderAdapter:
    """Trained weights through ``ajepa.inference.load``, keyed by :func:`weights_fingerprint` and the encoder
    used (``encoder=None``: see :func:`_load_inference`)."""
    emb = _load_inference(path, encoder, device, average_layers)
    return EmbedderAdapter(emb, f"weights:{weights_fingerprint(path)}:{emb.source_encoder}")


def random_like_model(path: str | os.PathLike, *, seed: int = 0, device: str = "cpu",
                      average_layers: int | str = 1) -> EmbedderAdapter:
    """A random-init encoder with the encoder config, front end and ``clip_seconds`` of the model at ``path``
    (an export or a training checkpoint)."""
    ref = _load_inference(path, None, "cpu")
    return random_init_embedder(ref.encoder_config, seed=seed, clip_seconds=float(ref.clip_seconds),
                                frontend_config=ref.frontend_config, device=device, average_layers=average_layers)


def _split_random_spec(spec: str) -> tuple[str, int | None]:
    """``random:TARGET[:SEED]`` -> (TARGET, SEED or None); TARGET may itself contain ``:`` (a path)."""
    rest = spec[len("random:"):]
    head, sep, tail = rest.rpartition(":")
    if sep and head and tail.lstrip("-").isdigit():
        return head, int(tail)
    return rest, None


def resolve_model(spec: str, *, device: str = "cpu", seed: int = 0, encoder: str | None = "target",
                  average_layers: int | str = 1) -> tuple[str, EmbedderAdapter]:
    """``PATH``, ``random:SIZE[:SEED]`` or ``random:PATH[:SEED]`` -> (display name, embedder).

    ``random:PATH`` is a random-init encoder with the architecture, front end and ``clip_seconds`` of the
    model at ``PATH`` (:func:`random_like_model`). ``encoder`` picks the encoder of a training checkpoint
    (``None``: target, or context when there is no target encoder or it is a frozen teacher). ``average_layers``
    applies to either.
    """
    if spec.startswith("random:"):
        target, s = _split_random_spec(spec)
        s = seed if s is None else s
        if not target:
            raise ValueError(f"expected random:SIZE[:SEED] or random:MODEL_PATH[:SEED], got {spec!r}")
        if target in _encoder_sizes():
            return f"random-init:{target}", random_init_embedder(target, seed=s, device=device,
                                                                 average_layers=average_layers)
        if Path(target).expanduser().exists():
            return f"random-init:like:{Path(target).name}", random_like_model(
                Path(target).expanduser(), seed=s, device=device, average_layers=average_layers)
        raise ValueError(f"{spec!r}: {target!r} is neither an encoder size ({', '.join(sorted(_encoder_sizes()))}) "
                         "nor an existing model path")
    if not Path(spec).exists():
        raise FileNotFoundError(f"model not found: {spec} (give an exported model folder, a .safetensors file, a "
                                "training checkpoint .pt, random:SIZE or random:MODEL_PATH)")
    return f"model:{Path(spec).name}", load_model_embedder(spec, encoder=encoder, device=device,
                                                           average_layers=average_layers)


def _encoder_config_of(embedder: Any) -> Any:
    cfg = getattr(getattr(embedder, "encoder", None), "cfg", None)
    if cfg is None or not is_dataclass(cfg) or {f.name for f in fields(cfg)} < {"embed_dim", "depth"}:
        raise ValueError("cannot tell the main model's encoder size for the random baseline; "
                         "name it explicitly, e.g. --baselines random:small")
    return cfg


def resolve_baseline(name: str, main: EmbedderAdapter | None, *, device: str = "cpu", seed: int = 0,
                     average_layers: int | str = 1) -> tuple[str, Any]:
    """``logmel`` | ``random`` (same size as the main model) | ``random:SIZE`` -> (display name, embedder).

    ``average_layers`` applies to the random encoders; the log-mel statistics have no layers.
    """
    if name == "logmel":
        return "logmel-stats", LogMelStatsEmbedder(device=device)
    if name.startswith("random:"):
        return resolve_model(name, device=device, seed=seed, average_layers=average_layers)
    if name == "random":
        if main is None:
            raise ValueError("the 'random' baseline needs a main model to copy the size from")
        inner = main.embedder
        cfg = _encoder_config_of(inner)
        fe = getattr(inner.frontend, "cfg", None)
        emb = random_init_embedder(cfg, seed=seed, clip_seconds=float(inner.clip_seconds), frontend_config=fe,
                                   device=device, average_layers=average_layers)
        return "random-init (same size)", emb
    raise ValueError(f"unknown baseline {name!r}; choose logmel, random or random:SIZE")
