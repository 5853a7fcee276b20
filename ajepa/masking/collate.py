"""The masks of each training batch, a pure function of ``(seed, batch_index)``, from the configured strategy."""

from __future__ import annotations

import torch

from ajepa.masking.blocks import TimeFrequencyBlockMasker
from ajepa.masking.config import MaskingConfig, Masks
from ajepa.masking.inverse import InverseBlockMasker
from ajepa.seeding import seed_from

__all__ = ["MaskCollator", "batch_seed", "build_masker"]


def build_masker(cfg: MaskingConfig, grid: tuple[int, int]) -> TimeFrequencyBlockMasker | InverseBlockMasker:
    """The masker of ``cfg.strategy`` on ``grid``: ``masker(rows, generator, step) -> Masks``."""
    if cfg.strategy == "inverse":
        return InverseBlockMasker(cfg, grid)
    return TimeFrequencyBlockMasker(cfg, grid)


def batch_seed(seed: int, batch_index: int) -> int:
    """A 64-bit generator seed that is a hash of (seed, batch_index), free of the collisions of
    ``seed * c + batch_index`` between neighbouring seeds."""
    return seed_from(seed, batch_index, bits=64)


class MaskCollator:
    """The masks of each training batch: a pure function of ``(seed, batch_index)``, so they do not depend on
    ``num_workers`` or resume; the curriculum step is the batch index. :class:`ajepa.training.loader.RankMaskCollate`
    attaches them to collated clips."""

    def __init__(self, cfg: MaskingConfig, grid: tuple[int, int], seed: int) -> None:
        self.masker = build_masker(cfg, grid)
        self.copies = cfg.copies
        self.seed = int(seed)
        batch_seed(self.seed, 0)  # reject a negative seed now, not in a worker

    def masks(self, batch_size: int, batch_index: int) -> Masks:
        """The masks of batch ``batch_index``: ``context_idx (B * copies, N_ctx)``, ``target_idx (B * copies, K,
        N_tgt)``, each clip's copies in consecutive rows."""
        generator = torch.Generator().manual_seed(batch_seed(self.seed, batch_index))
        masks = self.masker(batch_size * self.copies, generator, step=batch_index)
        masks.copies = self.copies
        return masks
