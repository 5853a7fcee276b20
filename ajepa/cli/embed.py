"""Command line: embed audio files into one ``.npz``.

    python -m ajepa embed clips/ more.wav list.csv [--model my_model/] --out embeddings.npz \
        [--pooling mean|mean+max|freqcat|freqcat+std] [--frames] [--batch-size 32] [--device cuda] \
        [--encoder target|context] [--average-layers 1|K|all]

Without ``--model`` (and ``AJEPA_MODEL`` unset) the default model shipped with ajepa is used; without
``--pooling`` / ``--average-layers`` the model's recorded read-out.

Inputs are audio files, folders (searched recursively) and manifests (.csv/.jsonl/.txt), see
:func:`ajepa.features.audio.list_audio_files`. The ``.npz`` holds, with no pickled objects:

- ``embeddings`` (B, W) float32, W the pooling's width (``Embedder.pooled_dim``: D for ``mean``, 2D for
  ``mean+max``, F_p * D for ``freqcat``, 2 * F_p * D for ``freqcat+std``) and ``paths`` (B,) unicode, in input order;
- ``failed_paths`` / ``failed_reasons`` (unicode): inputs that could not be read, with the reason; the rest are
  still embedded;
- with ``--frames``: ``frames`` (sum of T'_i, D) float32, ``frame_times`` (same length) in seconds and
  ``frame_offsets`` (B + 1,) int64: the frames of clip i are ``frames[frame_offsets[i]:frame_offsets[i + 1]]``.

The exit status is 0 when at least one file was embedded, 1 otherwise (the file is still written).
The embedding function itself is :func:`ajepa.embed` (module :mod:`ajepa.inference`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from ajepa.inference.choices import CLIP_POOLINGS, average_layers_arg
from ajepa.io import atomic_write, ensure_writable

__all__ = ["main"]

T = TypeVar("T")
R = TypeVar("R")


def _prefetch(fn: Callable[[T], R], items: Iterable[T], depth: int) -> Iterator[tuple[T, Future]]:
    # Decoding and resampling in a worker thread overlaps with the encoder (both release the GIL); the window
    # is bounded so a huge folder is never held in memory.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque[tuple[T, Future]] = deque()
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) > depth:
                yield pending.popleft()
        while pending:
            yield pending.popleft()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m ajepa embed``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m ajepa embed",
                                     description="Embed audio files with an ajepa model into an .npz file.")
    parser.add_argument("inputs", nargs="+", help="audio files, folders or manifests (.csv/.jsonl/.txt)")
    parser.add_argument("--model", default=os.environ.get("AJEPA_MODEL"),
                        help="exported model folder / .safetensors, or training checkpoint .pt "
                             "(default: $AJEPA_MODEL, else the default model shipped with ajepa)")
    parser.add_argument("--out", default="embeddings.npz", help="output .npz (default: embeddings.npz)")
    parser.add_argument("--pooling", choices=CLIP_POOLINGS, default=None,
                        help="clip pooling over valid tokens (default: the model's recorded read-out; mean for "
                             "files that record none; see ajepa.inference)")
    parser.add_argument("--frames", action="store_true", help="also store frame embeddings and timestamps")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default: 32)")
    parser.add_argument("--device", default=None, help="cuda, mps, cpu, ... (default: best available)")
    parser.add_argument("--encoder", choices=("target", "context"), default=None,
                        help="encoder of a training checkpoint (default: target)")
    parser.add_argument("--average-layers", type=average_layers_arg, default=None, metavar="K|all",
                        help="embed with the mean of the encoder's last K hidden states, 'all' for every block "
                             "and the patch embedding (default: the model's recorded read-out; 1, the final "
                             "output, for files that record none; see ajepa.inference)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--bf16", dest="bf16", action="store_const", const=True, default="auto",
                           help="bfloat16 autocast everywhere (default: on CUDA and on CPUs with native bf16 only)")
    precision.add_argument("--fp32", dest="bf16", action="store_const", const=False, help="plain float32")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")

    # torch and timm take seconds to import: only once the arguments are known to be good (--help is instant).
    from ajepa.features.audio import collect_audio_files
    from ajepa.inference.inputs import read_source
    from ajepa.inference.loading import load

    try:
        ensure_writable(args.out)  # before the work: a run must not end by throwing its embeddings away
        model = load(args.model or None, encoder=args.encoder, device=args.device, bf16=args.bf16,
                     average_layers=args.average_layers, pooling=args.pooling)
    except ValueError as exc:  # an OutputError, a CheckpointError, or --average-layers beyond the encoder's depth
        print(f"error: {exc}", file=sys.stderr)
        return 1
    paths, failures = collect_audio_files(args.inputs)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(paths), unit="file", desc="embedding", disable=args.no_progress)
    embedded: list[str] = []

    def readable() -> Iterator:
        for path, future in _prefetch(lambda p: read_source(p, None, model.sample_rate), paths, depth=8):
            try:
                wav = future.result()
            except Exception as exc:  # one bad file must not stop the run; its reason goes into the output
                failures.append((path, str(exc) or type(exc).__name__))
                bar.update(1)
                continue
            embedded.append(path)
            yield wav

    embeddings, frames, times = [], [], []
    try:
        for feats in model.iter_features(readable(), batch_size=args.batch_size,
                                         pooling=model.pooling):
            embeddings.append(feats.pooled(model.pooling).numpy())
            if args.frames:
                frames.append(feats.col_mean.numpy())
                times.append(feats.times)
            bar.update(1)
    finally:
        bar.close()

    width = model.pooled_dim(model.pooling)
    arrays: dict[str, np.ndarray] = {
        "embeddings": np.stack(embeddings).astype(np.float32) if embeddings else np.zeros((0, width), np.float32),
        "paths": np.array(embedded, dtype=str),
        "failed_paths": np.array([p for p, _ in failures], dtype=str),
        "failed_reasons": np.array([r for _, r in failures], dtype=str),
    }
    if args.frames:
        lengths = [len(f) for f in frames]
        arrays["frames"] = np.concatenate(frames) if frames else np.zeros((0, model.embed_dim), np.float32)
        arrays["frame_times"] = np.concatenate(times) if times else np.zeros(0)
        arrays["frame_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    out = Path(args.out)
    if embedded:  # nothing embedded: an existing output is left as it was
        try:
            # Through a file object so numpy does not append ".npz" to the temporary name.
            atomic_write(out, lambda tmp: _savez(tmp, arrays))
        except OSError as exc:
            print(f"error: writing {out} failed ({exc.strerror or exc}); it is unchanged", file=sys.stderr)
            return 1
    print(f"embedded {len(embedded)} file(s) -> {out}" if embedded else f"embedded nothing; {out} not written",
          file=sys.stderr, end="")
    print(f"; {len(failures)} failed:" if failures else "", file=sys.stderr)
    for path, reason in failures[:20]:
        print(f"  {reason}" if reason.startswith(path) else f"  {path}: {reason}", file=sys.stderr)
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more (see failed_paths in the output)", file=sys.stderr)
    return 0 if embedded else 1


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


if __name__ == "__main__":
    sys.exit(main())
