"""On-disk cache of clip embeddings, so that each (model, file set, pooling) is embedded only once.

An entry is ``<key>.npz`` (arrays ``embeddings`` (N, D) float32 and ``paths`` (N,) unicode, read with
``allow_pickle=False``) plus a ``<key>.json`` sidecar with human-readable metadata. The key is a SHA-256
of the model's identity string, the sorted list of (absolute path, size, mtime) of the files, the pooling
and the sample rate, so a changed file or a different model never returns stale embeddings. The identity covers
how an encoder is read out as well as its weights (``ajepa.evals.baselines.EmbedderAdapter`` appends ``:avg<k>`` when
it averages its last k > 1 hidden states).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ajepa.io import atomic_write

__all__ = ["ClipEmbedder", "default_cache_root", "default_cache_dir", "cache_key", "cached_embeddings"]

log = logging.getLogger(__name__)


@runtime_checkable
class ClipEmbedder(Protocol):
    """What the evaluation needs from a model: a cache identity and clip embeddings of audio files."""

    key: str  # identity of the weights and read-out, e.g. "weights:<sha256>:target:avg12", "logmel-stats:v1"
    sample_rate: int

    def embed(self, paths: Sequence[str], *, pooling: str = "mean", batch_size: int = 32,
              progress: bool = True) -> np.ndarray:
        """Return ``(len(paths), D)`` float32 clip embeddings, in the order of ``paths``."""
        ...


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/ajepa`` (default ``~/.cache/ajepa``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ajepa"


def default_cache_dir() -> Path:
    """Default folder of the embedding cache: ``~/.cache/ajepa/embeddings``."""
    return default_cache_root() / "embeddings"


def _file_fingerprints(paths: Sequence[str]) -> list[tuple[str, int, int]]:
    out = []
    for p in sorted(set(os.path.abspath(p) for p in paths)):
        try:
            st = os.stat(p)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"cannot embed a missing file: {p}") from e
        out.append((p, st.st_size, st.st_mtime_ns))
    return out


def pooling_for(embedder: object, pooling: str) -> str:
    """The pooling to ask ``embedder`` for: baselines with a pooling of their own (``fixed_pooling = True``, e.g.
    the log-mel statistics) always get ``"mean"``; encoders get the requested one."""
    return "mean" if getattr(embedder, "fixed_pooling", False) else pooling


def cache_key(model_key: str, paths: Sequence[str], pooling: str, sample_rate: int) -> str:
    """Hex SHA-256 identifying the embeddings of ``paths`` by the model ``model_key``."""
    if not model_key:
        raise ValueError("model_key must identify the weights (e.g. a weights hash); an empty key would collide")
    payload = json.dumps(
        {"model": model_key, "files": _file_fingerprints(paths), "pooling": pooling, "sample_rate": int(sample_rate),
         "format": 1},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _savez(path: Path, **arrays: np.ndarray) -> None:
    # Through a file object so numpy does not append ".npz" to the temporary name.
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _load(npz: Path, paths: list[str]) -> np.ndarray | None:
    try:
        with np.load(npz, allow_pickle=False) as z:
            emb, stored = z["embeddings"], z["paths"]
    except (OSError, ValueError, KeyError) as e:
        log.warning("ignoring unreadable embedding cache %s: %s", npz, e)
        return None
    index = {p: i for i, p in enumerate(stored.tolist())}
    try:
        order = [index[p] for p in paths]
    except KeyError:
        log.warning("embedding cache %s does not cover the requested files; recomputing", npz)
        return None
    if emb.ndim != 2 or len(emb) != len(stored):
        log.warning("embedding cache %s has a bad shape %s; recomputing", npz, emb.shape)
        return None
    return emb[order]


def cached_embeddings(
    embedder: ClipEmbedder,
    paths: Sequence[str],
    *,
    pooling: str = "mean",
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    progress: bool = True,
    refresh: bool = False,
) -> np.ndarray:
    """Embeddings ``(len(paths), D)`` of ``paths`` by ``embedder``, from the cache when present.

    ``cache_dir`` defaults to :func:`default_cache_dir`. ``refresh=True`` recomputes and overwrites.
    The returned rows follow the order of ``paths`` whatever order the entry was stored in.
    """
    paths = [os.path.abspath(p) for p in paths]
    if not paths:
        raise ValueError("no files to embed")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(embedder.key, paths, pooling, embedder.sample_rate)
    npz, meta = folder / f"{key}.npz", folder / f"{key}.json"
    if npz.is_file() and not refresh:
        emb = _load(npz, paths)
        if emb is not None:
            log.info("loaded %d cached embeddings (%s) from %s", len(emb), embedder.key, npz)
            return emb

    unique = sorted(set(paths))
    t0 = time.perf_counter()
    emb = np.asarray(embedder.embed(unique, pooling=pooling, batch_size=batch_size, progress=progress),
                     dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(unique):
        raise ValueError(f"embedder {embedder.key!r} returned shape {emb.shape} for {len(unique)} files; "
                         "expected (N, D) pooled clip embeddings")
    if not np.all(np.isfinite(emb)):
        raise ValueError(f"embedder {embedder.key!r} returned NaN or inf embeddings")
    seconds = time.perf_counter() - t0
    atomic_write(npz, lambda tmp: _savez(tmp, embeddings=emb, paths=np.array(unique, dtype=str)))
    info = {"key": key, "model": embedder.key, "pooling": pooling, "sample_rate": int(embedder.sample_rate),
            "n_files": len(unique), "dim": int(emb.shape[1]), "embed_seconds": round(seconds, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write(meta, lambda tmp: tmp.write_text(json.dumps(info, indent=2), encoding="utf-8"))
    index = {p: i for i, p in enumerate(unique)}
    return emb[[index[p] for p in paths]]
