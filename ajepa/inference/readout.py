"""The read-out, in one place: which encoder hidden states are averaged into token embeddings, which per-column
features are kept, and how they are pooled into one clip embedding (:class:`Readout`).

The embedder, the command line, the HEAR API, the exports and the evaluations all take a :class:`Readout`; a new
pooling is a name in :data:`POOLINGS`, its width in :meth:`Readout.width`, and its maths in
:meth:`ClipFeatures.pooled` (plus :meth:`Readout.column_features` if it needs a per-column feature of its own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ajepa.inference.choices import (
    _COLUMN_CAT_POOLINGS,
    AVERAGE_ALL,
    CLIP_POOLINGS,
    POOLINGS,
    RECOMMENDED_AVERAGE_LAYERS,
    RECOMMENDED_POOLING,
    average_layers_arg,
    check_pooling,
    resolve_average_layers,
)

__all__ = ["AVERAGE_ALL", "CLIP_POOLINGS", "LEGACY_READOUT", "POOLINGS", "RECOMMENDED_READOUT", "ClipFeatures",
           "ColumnFeatures", "Readout", "average_layers_arg", "check_pooling", "resolve_average_layers"]

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


@dataclass(frozen=True)
class ColumnFeatures:
    """One batch of windows' per-column features (see :meth:`Readout.column_features`), ``(B, T_p, ...)``."""

    mean: Tensor
    count: Tensor
    max: Tensor | None = None
    cat: Tensor | None = None


@dataclass(frozen=True)
class Readout:
    """How an encoder's tokens become embeddings.

    ``average_layers``: the token embeddings are the mean of the encoder's last ``average_layers`` hidden states
    (an int ``>= 1``, checked against the encoder's ``depth + 1`` by :meth:`layers`, or :data:`AVERAGE_ALL`).
    ``pooling``: one of :data:`POOLINGS` (``"none"``: frame embeddings, no clip vector).
    """

    pooling: str = "mean"
    average_layers: int | str = 1

    def __post_init__(self) -> None:
        check_pooling(self.pooling)
        layers = self.average_layers
        if layers != AVERAGE_ALL and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 1):
            raise ValueError(f"average_layers must be a positive int or {AVERAGE_ALL!r}, got {layers!r}")

    def with_pooling(self, pooling: str | None) -> Readout:
        """This read-out with another pooling (``None`` keeps this one)."""
        return self if pooling is None or pooling == self.pooling else replace(self, pooling=pooling)

    def layers(self, depth: int) -> list[int]:
        """The hidden-state indices averaged for an encoder of ``depth`` blocks (ValueError if out of range)."""
        count = resolve_average_layers(self.average_layers, depth)
        return list(range(depth + 1 - count, depth + 1))

    def width(self, embed_dim: int, freq_rows: int) -> int:
        """Width of a clip embedding for ``D = embed_dim`` and ``F_p = freq_rows`` (``"none"``: the frame width D)."""
        return embed_dim * {"mean+max": 2, "freqcat": freq_rows, "freqcat+std": 2 * freq_rows}.get(self.pooling, 1)

    @property
    def keeps_max(self) -> bool:
        """Whether the per-column maxima are kept (``"mean+max"``)."""
        return self.pooling == "mean+max"

    @property
    def keeps_cat(self) -> bool:
        """Whether each column's frequency tokens are kept concatenated (the ``freqcat`` poolings)."""
        return self.pooling in _COLUMN_CAT_POOLINGS

    def column_features(self, tokens: Tensor, valid: Tensor) -> ColumnFeatures:
        """``tokens (B, T_p, F_p, D)`` float32 and ``valid (B, T_p, F_p)`` bool -> on the CPU: the mean over each
        column's valid tokens ``(B, T_p, D)`` and their count ``(B, T_p)``, plus what this pooling needs: the max
        over valid tokens and the concatenation of the column's tokens in frequency order ``(B, T_p, F_p * D)``."""
        b, t_p, f_p, d = tokens.shape
        count = valid.sum(-1)
        mean = (tokens * valid[..., None]).sum(2) / count.clamp(min=1)[..., None]
        col_max = tokens.masked_fill(~valid[..., None], -math.inf).amax(2).cpu() if self.keeps_max else None
        col_cat = tokens.reshape(b, t_p, f_p * d).cpu() if self.keeps_cat else None
        return ColumnFeatures(mean=mean.cpu(), count=count.cpu(), max=col_max, cat=col_cat)

    def to_config(self, depth: int) -> dict[str, Any]:
        """The ``"readout"`` entry of an export's ``config.json`` (every layer of a ``depth``-block encoder is
        written as :data:`AVERAGE_ALL`)."""
        count = resolve_average_layers(self.average_layers, depth)
        return {"pooling": self.pooling, "average_layers": AVERAGE_ALL if count == depth + 1 else count}

    @classmethod
    def from_config(cls, raw: Any) -> Readout:
        """A recorded read-out ``{"pooling", "average_layers"}`` (ValueError for anything else; no ``"none"``)."""
        if not isinstance(raw, dict) or set(raw) != {"pooling", "average_layers"}:
            raise ValueError(f"'readout' must be a mapping with pooling and average_layers, got {raw!r}")
        if raw["pooling"] not in CLIP_POOLINGS:
            raise ValueError(f"readout pooling must be one of {CLIP_POOLINGS}, got {raw['pooling']!r}")
        return cls(pooling=raw["pooling"], average_layers=raw["average_layers"])


RECOMMENDED_READOUT = Readout(pooling=RECOMMENDED_POOLING, average_layers=RECOMMENDED_AVERAGE_LAYERS)
# What a model file without a recorded read-out (exports before it was recorded, training checkpoints) gets.
LEGACY_READOUT = Readout(pooling="mean", average_layers=1)
