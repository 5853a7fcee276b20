"""The read-out and export choices as plain values, importable without torch: what the command lines offer and
validate (``--pooling``, ``--average-layers``, ``--weights-dtype``), so that ``--help`` answers at once."""

from __future__ import annotations

import argparse

__all__ = ["AVERAGE_ALL", "CLIP_POOLINGS", "POOLINGS", "RECOMMENDED_AVERAGE_LAYERS", "RECOMMENDED_POOLING", "WEIGHTS_DTYPES", "average_layers_arg", "check_pooling",
           "resolve_average_layers"]

POOLINGS = ("mean", "mean+max", "freqcat", "freqcat+std", "none")
# The poolings that give one vector per clip: the choices of CLIs that store or probe clip embeddings.
CLIP_POOLINGS = tuple(p for p in POOLINGS if p != "none")
# The poolings built on each time column's concatenated frequency tokens (``ClipFeatures.col_cat``); features
# computed for either of them serve both.
_COLUMN_CAT_POOLINGS = ("freqcat", "freqcat+std")
# ``average_layers`` value meaning every hidden state of the encoder (resolved to depth + 1).
AVERAGE_ALL = "all"


def resolve_average_layers(value: int | str, depth: int) -> int:
    """How many last hidden states an encoder of ``depth`` blocks averages for ``average_layers=value``: an int
    in ``1..depth + 1``, or :data:`AVERAGE_ALL` for ``depth + 1`` (every block and the patch embedding).

    Raises:
        ValueError: anything else, naming the encoder depth (a plain ``ValueError``, not a model-file error).
    """
    if value == AVERAGE_ALL:
        return int(depth) + 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= depth + 1:
        raise ValueError(f"average_layers must be an int in 1..{depth + 1} (the encoder's hidden states: depth + 1) "
                         f"or {AVERAGE_ALL!r}, got {value!r}")
    return value


def average_layers_arg(text: str) -> int | str:
    """``argparse`` type of the ``--average-layers`` flags: :data:`AVERAGE_ALL` or a positive int.

    The upper bound is the depth of the model, so it is checked when the model is built
    (:func:`resolve_average_layers`), not here.
    """
    if text == AVERAGE_ALL:
        return AVERAGE_ALL
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int or {AVERAGE_ALL!r}, got {text!r}")
    return value


def check_pooling(pooling: str) -> None:
    """Raise ValueError unless ``pooling`` is one of :data:`POOLINGS`."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


# How an export may store its weights; all of them load as float32 (ajepa.inference.model_files).
WEIGHTS_DTYPES = ("float32", "float16", "int8")

# The read-out an export records unless told otherwise (ajepa.inference.readout.RECOMMENDED_READOUT): each time
# column's frequency tokens concatenated, mean and std over time, of the mean of every hidden state; 5 to 24 probe
# points above mean pooling of the last block for every encoder trained here (docs/RESULTS.md).
RECOMMENDED_POOLING = "freqcat+std"
RECOMMENDED_AVERAGE_LAYERS = AVERAGE_ALL
