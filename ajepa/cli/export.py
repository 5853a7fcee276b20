"""Export one encoder of a training checkpoint as pickle-free safetensors + JSON, and read both formats back.

Command line::

    python -m ajepa export outputs/<run>/checkpoints/last.pt --out my_model/ [--encoder target|context]

writes ``my_model/model.safetensors`` (the encoder's state_dict, keys as in ``ViTEncoder``) and
``my_model/config.json`` (format, version, front-end settings with normalisation statistics, encoder config,
sample rate, clip seconds, which encoder). ``--out name.safetensors`` writes ``name.safetensors`` + ``name.json``.
Load the result with ``ajepa.load("my_model/")``. The target (EMA) encoder is the default: it is the smoother,
better-evaluating representation of I-JEPA-style training (a checkpoint with one encoder, such as an MAE run's,
exports that one).

The config also records the model's recommended **read-out** (``"readout": {"pooling", "average_layers"}``),
which ``ajepa.load`` / ``ajepa.embed`` / the CLI / HEAR use unless told otherwise. The default is
:data:`RECOMMENDED_READOUT` (``freqcat+std`` of the mean of every layer), the read-out that probed best for every
encoder trained here (docs/RESULTS.md); ``--pooling`` / ``--average-layers`` record another. ``--weights-dtype``
stores the weights as ``float16`` (half the size; ``--fp16`` for short) or ``int8`` (a quarter: per-channel int8
matrices, :mod:`ajepa.inference.quantization`); they are computed in float32 after loading.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ajepa.errors import CheckpointError
from ajepa.inference import CLIP_POOLINGS, average_layers_arg, load
from ajepa.inference.model_files import WEIGHTS_DTYPES, export_paths
from ajepa.inference.readout import RECOMMENDED_READOUT

__all__ = ["export_checkpoint", "main"]


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, encoder: str | None = None,
                      pooling: str = RECOMMENDED_READOUT.pooling,
                      average_layers: int | str = RECOMMENDED_READOUT.average_layers,
                      weights_dtype: str = "float32") -> Path:
    """Export one encoder of a training checkpoint to ``out`` with its recommended read-out; return the weights path.

    ``encoder``: ``"target"`` / ``"context"``; ``None`` takes the target encoder, or the only one the checkpoint
    holds. ``pooling`` / ``average_layers`` are recorded as the model's read-out; ``weights_dtype`` is one of
    :data:`ajepa.inference.model_files.WEIGHTS_DTYPES`. The weights go through the same
    validation as :func:`ajepa.load`, so a bad checkpoint fails here, not later.
    """
    return load(checkpoint, encoder=encoder, device="cpu", pooling=pooling, average_layers=average_layers).save(
        out, weights_dtype=weights_dtype)



def main(argv: list[str] | None = None) -> int:
    """``python -m ajepa export CHECKPOINT --out DIR [--encoder target|context]``."""
    parser = argparse.ArgumentParser(prog="python -m ajepa export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="training checkpoint (.pt) written by python -m ajepa.train")
    parser.add_argument("--out", required=True, help="output folder, or NAME.safetensors (+ NAME.json)")
    parser.add_argument("--encoder", choices=("target", "context"), default=None,
                        help="which encoder to export (default: the EMA target encoder, or the only one there is)")
    parser.add_argument("--pooling", choices=CLIP_POOLINGS, default=RECOMMENDED_READOUT.pooling,
                        help=f"clip pooling recorded as the model's read-out (default {RECOMMENDED_READOUT.pooling})")
    parser.add_argument("--average-layers", type=average_layers_arg, default=RECOMMENDED_READOUT.average_layers,
                        metavar="K|all", help="hidden states averaged in the recorded read-out "
                                              f"(default {RECOMMENDED_READOUT.average_layers})")
    parser.add_argument("--weights-dtype", choices=WEIGHTS_DTYPES, default="float32",
                        help="storage of the weights: float16 halves the file, int8 (per-channel scales) quarters it; "
                             "all compute in float32 after loading (default float32)")
    parser.add_argument("--fp16", dest="weights_dtype", action="store_const", const="float16",
                        help="the same as --weights-dtype float16")
    args = parser.parse_args(argv)
    try:
        weights = export_checkpoint(args.checkpoint, args.out, encoder=args.encoder, pooling=args.pooling,
                                    average_layers=args.average_layers, weights_dtype=args.weights_dtype)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _, cfg_path = export_paths(args.out)
    print(f"wrote {weights} and {cfg_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
