"""A run directory is never silently reused: one process at a time, no new run over an old one unless asked.

- :class:`RunLock`: ``<run>/.ajepa.lock`` holds the owner's pid, host and start time, created exclusively; a second
  process on the same directory stops with a message naming the owner. A lock whose process is gone (same host) is
  stale and taken over, with a log line.
- :func:`check_reuse`: a fresh run (``resume=false``) refuses a directory that already holds a run (a checkpoint or
  logged metrics) unless ``overwrite=true``, which clears that run's checkpoints, metrics, TensorBoard logs and plots
  first. ``resume=true`` / ``resume=auto`` continue it.
- :func:`remove_stale_temporaries`: temporary checkpoint files left by a process killed mid-write are removed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from ajepa.errors import ConfigError
from ajepa.training.run_files import RunPaths

__all__ = ["LOCK_NAME", "RunDirectoryError", "RunLock", "check_reuse", "describe_run", "remove_stale_temporaries"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".ajepa.lock"


class RunDirectoryError(ConfigError):
    """The run directory cannot be used as asked: in use, holding another run, or not writable."""


def describe_run(paths: RunPaths) -> str | None:
    """What run the directory holds (``"a checkpoint at checkpoints/last.pt"``...), or None when it holds none."""
    if paths.last_checkpoint.is_file():
        return f"a checkpoint ({paths.last_checkpoint})"
    steps = list(paths.checkpoints.glob("step_*.pt")) if paths.checkpoints.is_dir() else []
    if steps:
        return f"{len(steps)} step checkpoint(s) in {paths.checkpoints}"
    if paths.metrics.is_file() and paths.metrics.stat().st_size > 0:
        return f"logged metrics ({paths.metrics})"
    return None


def check_reuse(paths: RunPaths, resume: bool | str, overwrite: bool) -> None:
    """Refuse to start a fresh run over an existing one (see the module docstring); clear it with ``overwrite``."""
    if resume not in (None, False, "false", ""):
        return
    held = describe_run(paths)
    if held is None:
        return
    if not overwrite:
        raise RunDirectoryError(
            f"{paths.root} already holds a run: {held}. A new run here would overwrite it. Continue it with "
            f"resume=true (or resume=auto), choose another hydra.run.dir, or pass overwrite=true to start over "
            f"(deleting its checkpoints, metrics, TensorBoard logs and plots).")
    logger.warning("overwrite=true: clearing the run in %s (%s)", paths.root, held)
    for folder in (paths.checkpoints, paths.tensorboard, paths.plots):
        shutil.rmtree(folder, ignore_errors=True)
    paths.metrics.unlink(missing_ok=True)


def remove_stale_temporaries(paths: RunPaths) -> int:
    """Delete the temporary files of checkpoint writes that never finished (their writer is gone: we hold the
    lock); returns how many."""
    if not paths.checkpoints.is_dir():
        return 0
    stale = [p for p in paths.checkpoints.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        logger.info("removed %d unfinished temporary checkpoint file(s) from %s", len(stale), paths.checkpoints)
    return len(stale)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory (a context manager); see the module docstring."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.held = False

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunDirectoryError` naming its owner."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirectoryError(f"cannot create the run directory {self.root}: {exc.strerror}") from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        # The lock appears whole or not at all: written under a private name, then hard-linked to its own (a link
        # fails if the name exists, which makes taking it exclusive), so a reader never finds half an owner.
        draft = self.root / f"{LOCK_NAME}.{owner['pid']}.tmp"
        try:
            draft.write_text(json.dumps(owner))
        except OSError as exc:
            reason = "read-only file system" if exc.errno == errno.EROFS else exc.strerror
            raise RunDirectoryError(f"the run directory {self.root} is not writable ({reason})") from None
        try:
            return self._link(draft)
        finally:
            draft.unlink(missing_ok=True)

    def _link(self, draft: Path) -> RunLock:
        for _ in range(2):
            try:
                os.link(draft, self.path)
            except FileExistsError:
                held = self._owner()
                if held is not None and held.get("host") == socket.gethostname() \
                        and isinstance(held.get("pid"), int) and not _process_alive(held["pid"]):
                    logger.warning("taking over the stale lock of process %s (no longer running) on %s",
                                   held["pid"], self.root)
                    self.path.unlink(missing_ok=True)
                    continue
                who = (f"process {held.get('pid')} on {held.get('host')} since {held.get('since')}" if held
                       else "another process")
                raise RunDirectoryError(
                    f"{self.root} is in use by {who}: two runs in one directory would interleave their metrics and "
                    f"checkpoints. Wait for it to finish, use another hydra.run.dir, or, if that process is gone, "
                    f"delete {self.path}") from None
            except OSError:  # a file system without hard links: an exclusive create, then the owner
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise RunDirectoryError(f"cannot take the lock {self.path} ({exc.strerror})") from None
                with os.fdopen(fd, "w") as f:
                    f.write(draft.read_text())
            self.held = True
            return self
        raise RunDirectoryError(f"could not take the lock {self.path}")

    def _owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
