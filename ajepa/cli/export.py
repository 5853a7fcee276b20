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
from ajepa.inference.choices import (
    CLIP_POOLINGS,
    RECOMMENDED_AVERAGE_LAYERS,
    RECOMMENDED_POOLING,
    WEIGHTS_DTYPES,
    average_layers_arg,
)

__all__ = ["export_checkpoint", "main"]


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, encoder: str | None = None,
                      pooling: str = RECOMMENDED_POOLING,
                      average_layers: int | str = RECOMMENDED_AVERAGE_LAYERS,
                      weights_dtype: str = "float32", license: str | None = None, figures: str | None = None) -> Path:
    """Export one encoder of a training checkpoint to ``out`` with its recommended read-out; return the weights path.

    ``encoder``: ``"target"`` / ``"context"``; ``None`` takes the target encoder, or the only one the checkpoint
    holds. ``pooling`` / ``average_layers`` are recorded as the model's read-out; ``weights_dtype`` is one of
    :data:`ajepa.inference.choices.WEIGHTS_DTYPES`. ``license``: the terms the weights carry (an SPDX id); by
    default inherited from the run's training data where it is known (``ajepa.inference.model_card.infer_license``).
    A folder export gets a model card (``README.md``) from the run's config and ``figures``. The weights go through
    the same validation as :func:`ajepa.load`, so a bad checkpoint fails here, not later.
    """
    from ajepa.checkpoint import load_checkpoint  # torch: imported once there is work, so --help is instant
    from ajepa.inference.loading import load

    model = load(checkpoint, encoder=encoder, device="cpu", pooling=pooling, average_layers=average_layers)
    if license is not None:
        model.license = license
    run = load_checkpoint(checkpoint).get("config")
    return model.save(out, weights_dtype=weights_dtype, training=run if isinstance(run, dict) else None,
                      figures=figures)


def main(argv: list[str] | None = None) -> int:
    """``python -m ajepa export CHECKPOINT --out DIR [--encoder target|context]``."""
    parser = argparse.ArgumentParser(prog="python -m ajepa export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="training checkpoint (.pt) written by python -m ajepa.train")
    parser.add_argument("--out", required=True, help="output folder, or NAME.safetensors (+ NAME.json)")
    parser.add_argument("--encoder", choices=("target", "context"), default=None,
                        help="which encoder to export (default: the EMA target encoder, or the only one there is)")
    parser.add_argument("--pooling", choices=CLIP_POOLINGS, default=RECOMMENDED_POOLING,
                        help=f"clip pooling recorded as the model's read-out (default {RECOMMENDED_POOLING})")
    parser.add_argument("--average-layers", type=average_layers_arg, default=RECOMMENDED_AVERAGE_LAYERS,
                        metavar="K|all", help="hidden states averaged in the recorded read-out "
                                              f"(default {RECOMMENDED_AVERAGE_LAYERS})")
    parser.add_argument("--weights-dtype", choices=WEIGHTS_DTYPES, default="float32",
                        help="storage of the weights: float16 halves the file, int8 (per-channel scales) quarters it; "
                             "all compute in float32 after loading (default float32)")
    parser.add_argument("--license", default=None, metavar="SPDX",
                        help="the terms the weights carry (default: inherited from the run's training data where "
                             "known, else 'unknown'); recorded in config.json and the model card")
    parser.add_argument("--fp16", dest="weights_dtype", action="store_const", const="float16",
                        help="the same as --weights-dtype float16")
    args = parser.parse_args(argv)
    try:
        weights = export_checkpoint(args.checkpoint, args.out, encoder=args.encoder, pooling=args.pooling,
                                    average_layers=args.average_layers, weights_dtype=args.weights_dtype,
                                    license=args.license)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from ajepa.inference.model_files import export_paths

    _, cfg_path = export_paths(args.out)
    print(f"wrote {weights} and {cfg_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
