"""Dataset statistics of the unnormalised log-mel, for :class:`FrontendConfig` ``norm_mean`` / ``norm_std``.

Command line::

    python -m ajepa.features.stats <folder|manifest> [--out stats.json] [--max-files N]

prints (and with ``--out`` writes) ``{"norm_mean": ..., "norm_std": ..., "files": n, "skipped": m}``.
The keys are ``FrontendConfig`` field names, so the statistics travel with the model config; pass them
to training as Hydra overrides ``frontend.norm_mean=... frontend.norm_std=...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ajepa.errors import AudioInputError
from ajepa.features.audio import list_audio_files, load_audio
from ajepa.features.logmel import FrontendConfig, LogMelFrontend

__all__ = ["LogMelStats", "logmel_stats", "main"]

_log = logging.getLogger(__name__)
_CHUNK_FRAMES = 6000  # one minute of frames at a time bounds memory for long recordings


@dataclass(frozen=True)
class LogMelStats:
    """Mean and (population) std of the unnormalised log-mel over every frame and mel bin."""

    norm_mean: float
    norm_std: float
    files: int  # files that contributed
    skipped: int  # unreadable files
    frames: int


def logmel_stats(
    files_or_root: str | os.PathLike | Sequence[str | os.PathLike],
    frontend_cfg: FrontendConfig = FrontendConfig(),
    max_files: int | None = None,
) -> LogMelStats:
    """Stream every file through the front end and accumulate the log-mel moments in float64.

    Args:
        files_or_root: a folder or manifest (see :func:`list_audio_files`), or a list of paths.
        frontend_cfg: the front end whose unnormalised output is measured.
        max_files: use at most this many files, evenly spaced over the sorted list (a deterministic
            sample that does not favour the first folders).

    Raises:
        AudioInputError: when no file could be read.
    """
    if isinstance(files_or_root, (str, os.PathLike)):
        files = list_audio_files(files_or_root)
    else:
        files = [os.fspath(f) for f in files_or_root]
    if max_files is not None and 0 < max_files < len(files):
        picks = np.unique(np.linspace(0, len(files) - 1, max_files).round().astype(int))
        files = [files[i] for i in picks]

    frontend = LogMelFrontend(frontend_cfg, normalize=False)
    hop, win = frontend.hop_length, frontend.win_length
    # Sums in float64: log-mel values are O(10), so sum / sum-of-squares stay exact to ~1e-12 relative
    # even over billions of values; no need for a two-pass or Welford update.
    total, total_sq, count, frames, used, skipped = 0.0, 0.0, 0, 0, 0, 0
    with torch.inference_mode():
        for path in files:
            try:
                wav = load_audio(path, target_sr=frontend_cfg.sample_rate)
            except AudioInputError as err:
                _log.warning("skipping %s", err)
                skipped += 1
                continue
            # Chunks overlap by win - hop samples so that they frame exactly like the whole clip.
            num_frames = frontend.num_frames(wav.shape[-1])
            for first in range(0, num_frames, _CHUNK_FRAMES):
                last = min(first + _CHUNK_FRAMES, num_frames)
                piece = wav[first * hop : (last - 1) * hop + win]
                logmel = frontend(piece.unsqueeze(0)).double()
                total += logmel.sum().item()
                total_sq += logmel.square().sum().item()
                count += logmel.numel()
                frames += logmel.shape[-1]
            used += 1
    if used == 0:
        raise AudioInputError(f"{files_or_root}: no readable audio among {len(files)} file(s)")
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean * mean, 0.0))
    return LogMelStats(norm_mean=mean, norm_std=std, files=used, skipped=skipped, frames=frames)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m ajepa.features.stats", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="folder of audio files or a manifest (.csv, .jsonl, .txt)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--max-files", type=int, help="use at most N files, evenly spaced")
    args = parser.parse_args(argv)
    try:
        stats = logmel_stats(args.source, max_files=args.max_files)
    except AudioInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = {"norm_mean": stats.norm_mean, "norm_std": stats.norm_std, "files": stats.files, "skipped": stats.skipped}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(
        f"Hydra overrides: frontend.norm_mean={stats.norm_mean:.7g} frontend.norm_std={stats.norm_std:.7g}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
