"""Reading WebDataset-style tar shards: samples grouped by key, and where the shards of a source are."""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from glob import glob
from pathlib import Path

from ajepa.data.shard import INDEX_NAME, read_index
from ajepa.errors import AudioInputError
from ajepa.features.audio import AUDIO_EXTENSIONS

__all__ = ["TarSample", "iter_tar_samples", "list_shards"]

logger = logging.getLogger(__name__)


@dataclass
class TarSample:
    """One sample of a shard: the members sharing a key."""

    key: str
    ext: str            # audio member suffix, lower case without the dot
    audio: bytes        # the audio file's bytes, as packed
    meta: dict | None   # the parsed "{key}.json", if any


def _split_name(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is the member path up to the first dot of its base name."""
    folder, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(folder, stem), ext.lower()


def _is_audio(ext: str) -> bool:
    return f".{ext}" in AUDIO_EXTENSIONS


def iter_tar_samples(path: str | os.PathLike) -> Iterator[TarSample]:
    """Read a shard sequentially and yield its samples in member order.

    Members of one key must be adjacent (as the writer and WebDataset put them); a key without an audio
    member is skipped with a warning.
    """
    key: str | None = None
    parts: dict[str, bytes] = {}

    def finish() -> TarSample | None:
        audio_ext = next((e for e in parts if _is_audio(e)), None)
        if audio_ext is None:
            logger.warning("%s: key %s has no audio member; skipped", path, key)
            return None
        meta = json.loads(parts["json"].decode("utf-8")) if "json" in parts else None
        return TarSample(key=key or "", ext=audio_ext, audio=parts[audio_ext], meta=meta)

    # "r|": strictly sequential reads, the access pattern shards exist for (also works on pipes).
    try:
        with tarfile.open(path, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                member_key, ext = _split_name(member.name)
                if key is not None and member_key != key:
                    sample = finish()
                    if sample is not None:
                        yield sample
                    parts = {}
                key = member_key
                handle = tar.extractfile(member)
                parts[ext] = handle.read() if handle is not None else b""
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise AudioInputError(f"{path}: damaged or truncated shard after key {key!r} ({exc})") from None
    if key is not None:
        sample = finish()
        if sample is not None:
            yield sample


def _count_samples(path: str) -> int:
    """Samples (keys with an audio member) in a tar, from its headers only."""
    keys = set()
    try:
        with tarfile.open(path, mode="r:") as tar:  # random access: headers are read, data is seeked over
            for member in tar:
                key, ext = _split_name(member.name)
                if member.isfile() and _is_audio(ext):
                    keys.add(key)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise AudioInputError(f"{path}: damaged or truncated shard ({exc})") from None
    return len(keys)


def list_shards(urls: str | os.PathLike | Sequence[str | os.PathLike]) -> list[tuple[str, int]]:
    """Resolve shard sources to ``[(path, num_samples), ...]``.

    ``urls`` is a shard folder (its ``index.json``, else its ``*.tar`` files sorted), the ``index.json`` itself,
    a glob pattern, one ``.tar`` path, or a list of ``.tar`` paths. Sample counts come from the folder's
    ``index.json`` when it lists the shard, else from scanning the tar headers (slower on large sets).

    Raises:
        AudioInputError: nothing found, or a listed shard is missing.
    """
    if isinstance(urls, (str, os.PathLike)):
        source = os.fspath(urls)
        path = Path(source).expanduser()
        if (path.is_dir() and (path / INDEX_NAME).is_file()) or path.name == INDEX_NAME:
            root = path if path.is_dir() else path.parent
            shards = [str(root / s["name"]) for s in read_index(root)["shards"]]
        elif path.is_dir():
            shards = sorted(str(p) for p in path.glob("*.tar"))
        elif any(ch in source for ch in "*?["):
            shards = sorted(glob(os.path.expanduser(source)))
        else:
            shards = [str(path)]
    else:
        shards = [os.fspath(u) for u in urls]
    if not shards:
        raise AudioInputError(f"no tar shards found in {urls!r}")
    counts: dict[str, dict[str, int]] = {}   # folder -> {shard name: count} from its index.json, if any
    result = []
    for shard in shards:
        if not os.path.isfile(shard):
            raise AudioInputError(f"{shard}: no such shard")
        folder, name = os.path.split(os.path.abspath(shard))
        if folder not in counts:
            counts[folder] = {}
            if os.path.isfile(os.path.join(folder, INDEX_NAME)):
                counts[folder] = {s["name"]: int(s["count"]) for s in read_index(folder)["shards"]}
        count = counts[folder].get(name)
        result.append((shard, count if count is not None else _count_samples(shard)))
    return result
