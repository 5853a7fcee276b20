"""Atomic file writes: every file ajepa writes (checkpoints, exports, shards, embeddings, caches) goes through here.

A write lands under a temporary name in the destination folder, is flushed to disk, and is renamed over the
destination, so a reader (or a resumed run) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from ajepa.errors import OutputError

__all__ = ["atomic_write", "ensure_writable"]


def atomic_write(dest: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file beside ``dest``, fsync it and rename it to ``dest``.

    The parent folder is created when missing. On any exception the temporary file is removed, ``dest`` is left
    as it was, and the exception propagates. The file gets the permissions of a plain ``open`` (0o666 less the
    umask), not the owner-only mode of ``tempfile.mkstemp``. Returns ``dest`` as a :class:`~pathlib.Path`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(dest)
    mode = tmp.stat().st_mode & 0o777  # what the umask gave a new file
    try:
        write(tmp)
        # Writers that replace the file themselves (safetensors does) leave it owner-only: give it a plain file's mode.
        os.chmod(tmp, mode)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)
    return dest


def _create_temp(dest: Path) -> Path:
    # O_EXCL makes the name ours alone, as mkstemp would; mode 0o666 lets the umask decide who may read the result.
    while True:
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is flushed; not every platform can open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_writable(dest: str | os.PathLike) -> Path:
    """Check, before any work, that ``dest`` can be written: its folder exists or can be made, and a file can be
    created there. Nothing is left behind; an existing ``dest`` is not touched.

    Raises:
        OutputError: naming the folder and the reason (a read-only or full file system, missing permission).
    """
    dest = Path(dest)
    try:
        if dest.is_dir():
            raise OutputError(f"{dest} is a folder; give a file name for the output")
        dest.parent.mkdir(parents=True, exist_ok=True)
        _create_temp(dest).unlink()
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return dest
