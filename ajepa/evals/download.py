"""Download and unpack the public evaluation data sets (needs a network; nothing here runs in tests).

Downloads go to ``<file>.part`` and are resumed with an HTTP ``Range`` request when the server allows it
(otherwise restarted); the finished file is checked against its known size / SHA-256 and only then renamed
into place. Archives are unpacked into a temporary folder next to the destination and renamed when
complete, so an interrupted run never leaves a half-unpacked data set that looks valid.

    python -m ajepa.evals.download esc50 [--dir DIR]
    python -m ajepa.evals.download speech_commands_test
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ajepa.evals.cache import default_cache_root

__all__ = ["Source", "SOURCES", "DownloadError", "default_download_dir", "download_file", "verify_file",
           "extract_archive", "ensure_dataset", "main"]


@dataclass(frozen=True)
class Source:
    """One downloadable archive and the folder it unpacks to (``data_subdir`` is the data set root in it)."""

    url: str
    filename: str
    folder: str
    size: int | None = None
    sha256: str | None = None
    data_subdir: str = ""


SOURCES: dict[str, Source] = {
    # The GitHub branch archive changes with the repository, so it has no fixed size or checksum;
    # it is checked by unpacking and by the presence of meta/esc50.csv.
    "esc50": Source("https://github.com/karoldvl/ESC-50/archive/master.zip", "ESC-50-master.zip", "ESC-50-master"),
    "speech_commands": Source("http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
                              "speech_commands_v0.02.tar.gz", "speech_commands_v0.02", size=2428923189),
    "speech_commands_test": Source(
        "http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
        "speech_commands_test_set_v0.02.tar.gz", "speech_commands_test_set_v0.02", size=112563277,
        sha256="cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df"),
    "fsdd": Source("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/master.zip",
                   "free-spoken-digit-dataset-master.zip", "free-spoken-digit-dataset-master"),
}
_MARKER = ".ajepa-complete"


class DownloadError(RuntimeError):
    """A download or unpack failed; the message says what to do."""


def default_download_dir() -> Path:
    """``~/.cache/ajepa/datasets``."""
    return default_cache_root() / "datasets"


def verify_file(path: str | os.PathLike, size: int | None = None, sha256: str | None = None) -> None:
    """Raise :class:`DownloadError` when ``path`` does not have the expected size or SHA-256."""
    path = Path(path)
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise DownloadError(f"{path} has {actual} bytes, expected {size}")
    if sha256 is not None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != sha256.lower():
            raise DownloadError(f"{path} has SHA-256 {h.hexdigest()}, expected {sha256}")


def download_file(url: str, dest: str | os.PathLike, *, size: int | None = None, sha256: str | None = None,
                  timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify, and rename into place."""
    from tqdm.auto import tqdm

    dest = Path(dest)
    if dest.is_file():
        verify_file(dest, size, sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    headers = {"User-Agent": "ajepa-evals"}
    if have:
        headers["Range"] = f"bytes={have}-"
    hint = f"download {url} by hand and save it as {dest}, then rerun"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and size is not None and have == size:  # the .part is already complete
            resp = None
        else:
            raise DownloadError(f"HTTP {e.code} for {url}; {hint}") from e
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot reach {url} ({reason}): no network? Connect, or {hint}") from e
    if resp is not None:
        with resp:
            resumed = have and getattr(resp, "status", 200) == 206
            if not resumed:
                have = 0  # the server ignored Range: start over
            total = resp.headers.get("Content-Length")
            total = have + int(total) if total is not None else size
            try:
                with open(part, "ab" if resumed else "wb") as f, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress
                ) as bar:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
            except (urllib.error.URLError, socket.timeout, OSError) as e:
                raise DownloadError(f"download of {url} interrupted ({e}); rerun to resume from {part}") from e
    try:
        verify_file(part, size, sha256)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def _check_member(name: str, dest: Path) -> None:
    target = (dest / name).resolve()
    if os.path.isabs(name) or not target.is_relative_to(dest.resolve()):
        raise DownloadError(f"refusing to unpack {name!r}: it points outside the destination folder")


def extract_archive(archive: str | os.PathLike, dest_dir: str | os.PathLike, folder: str) -> Path:
    """Unpack a .zip / .tar(.gz) into ``dest_dir/folder`` atomically and return that folder.

    An archive with a single top-level folder has that folder renamed to ``folder``; otherwise its
    contents become ``folder``. Members pointing outside the destination are rejected.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    final = dest_dir / folder
    if final.exists():
        raise DownloadError(f"{final} exists already; remove it to unpack again")
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{folder}."))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                bad = z.testzip()
                if bad is not None:
                    raise DownloadError(f"{archive} is corrupt (member {bad}); delete it and download again")
                for name in z.namelist():
                    _check_member(name, tmp)
                z.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                members = t.getmembers()
                for m in members:
                    _check_member(m.name, tmp)
                    if m.issym() or m.islnk():
                        raise DownloadError(f"refusing to unpack link {m.name!r} from {archive}")
                t.extractall(tmp, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive; delete it and download again")
        top = [p for p in tmp.iterdir() if not p.name.startswith(".")]
        src = top[0] if len(top) == 1 and top[0].is_dir() else tmp
        (src / _MARKER).write_text(archive.name)
        os.replace(src, final)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise DownloadError(f"{archive} is corrupt ({e}); delete it and download again") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def ensure_dataset(name: str, root: str | os.PathLike | None = None, *, keep_archive: bool = False,
                   progress: bool = True) -> Path:
    """Download and unpack data set ``name`` (see :data:`SOURCES`) under ``root`` once; return its root."""
    if name not in SOURCES:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(SOURCES)}")
    src = SOURCES[name]
    root = Path(root) if root is not None else default_download_dir()
    final = root / src.folder
    if (final / _MARKER).is_file():
        return final / src.data_subdir if src.data_subdir else final
    if final.exists():
        raise DownloadError(f"{final} exists but is incomplete (no {_MARKER}); remove it and rerun")
    archive = download_file(src.url, root / src.filename, size=src.size, sha256=src.sha256, progress=progress)
    out = extract_archive(archive, root, src.folder)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return out / src.data_subdir if src.data_subdir else out


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m ajepa.evals.download NAME [--dir DIR] [--keep-archive]``."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.download", description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=sorted(SOURCES))
    p.add_argument("--dir", default=None, help="download folder (default ~/.cache/ajepa/datasets)")
    p.add_argument("--keep-archive", action="store_true")
    a = p.parse_args(argv)
    try:
        print(ensure_dataset(a.name, a.dir, keep_archive=a.keep_archive))
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
