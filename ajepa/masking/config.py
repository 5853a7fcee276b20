"""What a masking strategy is configured by, and what every strategy returns (``configs/masking/*.yaml``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ajepa.errors import ConfigError
from ajepa.validation import check_fields

__all__ = ["STRATEGIES", "MaskingConfig", "Masks"]

# The block strategies (ajepa.masking.blocks) and the inverse-block one (ajepa.masking.inverse).
BLOCK_STRATEGIES = ("multiblock", "time", "frequency", "curriculum")
STRATEGIES = (*BLOCK_STRATEGIES, "inverse")

@dataclass
class MaskingConfig:
    """How targets and context are drawn on the patch grid (see the module docstring)."""

    strategy: str = "multiblock"  # multiblock | time | frequency | curriculum
    num_targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)  # fraction of the grid per target block
    target_aspect: tuple[float, float] = (0.75, 1.5)  # height(freq)/width(time), sampled log-uniformly
    context_scale: tuple[float, float] = (0.85, 1.0)
    min_context: int = 10  # tokens; fewer is never returned (at least 1 is always kept)
    curriculum_c0: float = 0.5  # A-JEPA: p(s) = min(1, sqrt(s(1-c0^2)/S) + c0^2)
    curriculum_steps: int = 10000  # S
    # Masked copies of each clip the context encoder sees (the target encoder runs once per clip): data2vec 2.0 /
    # EAT's multi-mask. Any strategy can be drawn several times; the masks' batch is then B * copies.
    copies: int = 1
    keep_ratio: float = 0.25  # inverse: the fraction of the grid left visible as context
    visible_block: tuple[int, int] = (2, 2)  # inverse: (freq, time) cells of each visible block

    def __post_init__(self) -> None:
        check_fields(self, "masking")
        # Hydra / YAML hand over lists; tuples keep the config hashable and comparable.
        self.target_scale = _range("target_scale", self.target_scale, upper=1.0)
        self.target_aspect = _range("target_aspect", self.target_aspect, upper=math.inf)
        self.context_scale = _range("context_scale", self.context_scale, upper=1.0)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"masking strategy {self.strategy!r} is not one of {STRATEGIES}")
        if int(self.num_targets) < 1:
            raise ConfigError(f"num_targets must be >= 1, got {self.num_targets}")
        if int(self.min_context) < 0:
            raise ConfigError(f"min_context must be >= 0, got {self.min_context}")
        if not 0.0 <= float(self.curriculum_c0) <= 1.0:
            raise ConfigError(f"curriculum_c0 must be in [0, 1], got {self.curriculum_c0}")
        if int(self.curriculum_steps) < 1:
            raise ConfigError(f"curriculum_steps must be >= 1, got {self.curriculum_steps}")
        if isinstance(self.copies, bool) or int(self.copies) != self.copies or not 1 <= int(self.copies) <= 64:
            raise ConfigError(f"masking.copies must be an int in 1..64, got {self.copies!r}")
        self.copies = int(self.copies)
        if not 0.0 < float(self.keep_ratio) < 1.0:
            raise ConfigError(f"masking.keep_ratio must be in (0, 1), got {self.keep_ratio}")
        try:
            h, w = (int(v) for v in self.visible_block)
        except (TypeError, ValueError):
            raise ConfigError(f"masking.visible_block must be a pair (freq, time), got {self.visible_block!r}") from None
        if min(h, w) < 1:
            raise ConfigError(f"masking.visible_block cells must be >= 1, got {self.visible_block!r}")
        self.visible_block = (h, w)


def _range(name: str, value, upper: float) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a pair (low, high), got {value!r}") from None
    if not (0.0 < lo <= hi <= upper):
        raise ConfigError(f"{name} must satisfy 0 < low <= high <= {upper}, got {value!r}")
    return lo, hi




@dataclass
class Masks:
    """Index masks into the time-major token order, for ``R = B * copies`` rows (clip ``i``'s copies are rows
    ``i * copies .. i * copies + copies - 1``)."""

    context_idx: Tensor  # (R, N_ctx) int64, sorted, same N_ctx for every row
    target_idx: Tensor  # (R, K, N_tgt) int64, sorted per block, same N_tgt for every block and row
    copies: int = 1
