"""Atomic, pickle-free checkpoint files.

A checkpoint is a dict of tensors and plain Python values (:func:`ajepa.training.run_files.checkpoint_state` lists its keys). Writing goes through a temporary
file in the same folder, fsync and ``os.replace``, so a run killed mid-write leaves the previous checkpoint intact.
Reading uses ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from ajepa.errors import CheckpointError
from ajepa.io import atomic_write

CHECKPOINT_FORMAT = "ajepa-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically and return the final path.

    The ``format`` and ``version`` keys are filled in when absent, so every file this writes is recognisable.
    """
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    try:
        return atomic_write(path, lambda tmp: torch.save(state, tmp))
    except (OSError, RuntimeError) as exc:
        raise _write_error(Path(path), exc) from None


def _write_error(path: Path, exc: BaseException) -> CheckpointError:
    """A checkpoint write that failed, named for what happened (the previous file is intact: atomic_write)."""
    full = getattr(exc, "errno", None) == errno.ENOSPC
    if not full and isinstance(exc, RuntimeError):
        # torch's zip writer reports a full disk as "unexpected pos" / "file write failed"; tell by the free space.
        try:
            full = shutil.disk_usage(path.parent).free < 64 * 2**20
        except OSError:
            full = False
    if full:
        return CheckpointError(f"no space left on the device of {path.parent} while writing {path.name}; the "
                               "previous checkpoint there is intact. Free some space and resume the run")
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EROFS:
        return CheckpointError(f"cannot write {path}: the folder is not writable ({exc})")
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CheckpointError(f"writing {path} failed ({reason}); the previous checkpoint there is intact")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, is not a torch file, holds anything but tensors and plain values,
            or is not an ajepa checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        # torch.save has written zip archives since torch 1.6; anything else is not a checkpoint of ours.
        raise CheckpointError(f"{path}: not a torch checkpoint file (not a zip archive)")
    # torch.load does not check the archive's CRCs: a file with flipped bits would load with wrong weights.
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint (the zip archive does not read back: {exc})") from None
    if damaged is not None:
        raise CheckpointError(f"{path}: damaged checkpoint (member {damaged!r} fails its CRC check); use an "
                              "earlier checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refused an object that is not a tensor or plain value: never unpickle it.
        raise CheckpointError(
            f"{path}: holds pickled Python objects, not only tensors and plain values; refusing to load it"
        ) from None
    except Exception as exc:  # torch raises many types on damaged archives; all mean the same to the caller
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: damaged or unreadable torch checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ajepa training checkpoint (missing format={CHECKPOINT_FORMAT!r})")
    version = state.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version!r} is newer than this ajepa ({CHECKPOINT_VERSION})")
    return state
