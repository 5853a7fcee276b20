"""Read-out choices: clip poolings over stitched column features, and which encoder layers are averaged."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["AVERAGE_ALL", "CLIP_POOLINGS", "POOLINGS", "ClipFeatures", "average_layers_arg", "check_pooling",
           "pooled_width", "resolve_average_layers"]

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


@dataclass
class ClipFeatures:
    """Stitched per-column results of one clip, from :meth:`Embedder.iter_features` (CPU float32).

    Attributes:
        col_mean: ``(T', D)`` frame embeddings (mean over each time column's valid tokens).
        col_max: ``(T', D)`` max over each column's valid tokens (only for ``"mean+max"``).
        col_count: ``(T',)`` number of valid tokens per column.
        times: ``(T',)`` column centres in seconds.
        col_cat: ``(T', F_p * D)`` each column's tokens concatenated in frequency order (only for ``"freqcat"``
            and ``"freqcat+std"``).
    """

    col_mean: Tensor
    col_max: Tensor | None
    col_count: Tensor
    times: np.ndarray
    col_cat: Tensor | None = None

    def pooled(self, pooling: str) -> Tensor:
        """Clip embedding: ``"mean"`` over valid tokens ``(D,)``, ``"mean+max"`` ``(2D,)``, ``"freqcat"``
        ``(F_p * D,)`` or ``"freqcat+std"`` ``(2 * F_p * D,)``; all but ``"mean"`` need the features to have been
        computed for that pooling (the two ``freqcat`` poolings share theirs)."""
        weights = self.col_count.to(torch.float32)
        if pooling in _COLUMN_CAT_POOLINGS:
            if self.col_cat is None:
                raise ValueError(f"pooling {pooling!r} needs the column concatenations: features computed with "
                                 f"pooling in {_COLUMN_CAT_POOLINGS}")
            # Columns hold all F_p tokens or none (validity is per time column), so plain statistics are exact.
            mean = self.col_cat.mean(0)
            if pooling == "freqcat":
                return mean
            # Population std (ddof 0): defined, and zero, for a clip of a single column.
            return torch.cat([mean, self.col_cat.std(0, correction=0)])
        mean = (self.col_mean * weights[:, None]).sum(0) / weights.sum()
        if pooling == "mean":
            return mean
        if pooling != "mean+max" or self.col_max is None:
            raise ValueError(f"pooling {pooling!r} needs 'mean', or 'mean+max' with features computed for it")
        return torch.cat([mean, self.col_max.amax(0)])


def check_pooling(pooling: str) -> None:
    """Raise ValueError unless ``pooling`` is one of :data:`POOLINGS`."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")



def pooled_width(pooling: str, embed_dim: int, freq_rows: int) -> int:
    """Width of a clip embedding under ``pooling`` for ``D = embed_dim`` and ``F_p = freq_rows``
    (``"none"`` gives the frame width D)."""
    check_pooling(pooling)
    return embed_dim * {"mean+max": 2, "freqcat": freq_rows, "freqcat+std": 2 * freq_rows}.get(pooling, 1)
