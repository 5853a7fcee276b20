"""Inverse block masking (data2vec 2.0, EAT): a few visible time-frequency blocks are the context, every other
cell of the grid is a target.

Blocks of ``visible_block`` cells are placed uniformly (top-left corner over every valid position) and added one
at a time until their union holds ``keep = round(keep_ratio * N)`` cells; the cells of the last block beyond that
count are dropped at random, so every row keeps exactly ``keep`` context cells and ``N - keep`` targets and the
masks stack without padding. Visible blocks rather than scattered cells make the task harder to solve by
interpolating a neighbour (EAT's ablation: 5x5 blocks beat 1x1 cells). Drawn for many rows at once, vectorised.
"""

from __future__ import annotations

import math

import torch

from ajepa.errors import ConfigError
from ajepa.masking.blocks import rect_mask
from ajepa.masking.config import MaskingConfig, Masks

__all__ = ["InverseBlockMasker"]


class InverseBlockMasker:
    """``__call__(rows, generator, step) -> Masks``: ``context_idx (rows, keep)``, ``target_idx (rows, 1, N - keep)``,
    both sorted, disjoint and together the whole grid. ``step`` is unused (no curriculum)."""

    def __init__(self, cfg: MaskingConfig, grid: tuple[int, int]) -> None:
        n_f, n_t = (int(g) for g in grid)
        if n_f < 1 or n_t < 1:
            raise ConfigError(f"patch grid must be at least 1 x 1, got {tuple(grid)}")
        self.grid = (n_f, n_t)
        self.num_tokens = n_f * n_t
        if self.num_tokens < 2:
            raise ConfigError(f"inverse masking needs a grid of at least 2 cells, got {tuple(grid)}")
        self.keep = min(max(1, round(cfg.keep_ratio * self.num_tokens)), self.num_tokens - 1)
        self.block = (min(cfg.visible_block[0], n_f), min(cfg.visible_block[1], n_t))
        # Enough candidate blocks that their union nearly always reaches `keep`; a shortfall is filled at random.
        self.candidates = math.ceil(2 * self.keep / (self.block[0] * self.block[1])) + 4

    def __call__(self, rows: int, generator: torch.Generator, step: int = 0) -> Masks:
        if rows < 1:
            raise ConfigError(f"batch_size must be >= 1, got {rows}")
        (n_f, n_t), (h, w), c, n = self.grid, self.block, self.candidates, self.num_tokens
        top = torch.randint(0, n_f - h + 1, (rows * c,), generator=generator)
        left = torch.randint(0, n_t - w + 1, (rows * c,), generator=generator)
        union = rect_mask(top, left, self.block, self.grid).view(rows, c, n).cummax(dim=1).values  # (rows, c, N)
        reached = union.sum(-1) >= self.keep
        last = torch.where(reached.any(1), reached.int().argmax(1), c - 1)  # first block that reaches `keep`
        arange = torch.arange(rows)
        visible = union[arange, last]
        settled = torch.where((last > 0)[:, None], union[arange, (last - 1).clamp(min=0)], False)
        # Keys: cells of the earlier blocks first (-1), then the last block's new cells in random order, then (only
        # when the union fell short) random other cells; the `keep` smallest keys are the context.
        keys = torch.rand(rows, n, generator=generator)
        keys = torch.where(settled, -1.0, torch.where(visible, keys, keys + 2.0))
        context = keys.topk(self.keep, dim=1, largest=False, sorted=False).indices.sort(dim=1).values
        is_target = torch.ones(rows, n, dtype=torch.bool).scatter_(1, context, False)
        target = is_target.nonzero()[:, 1].view(rows, 1, n - self.keep)
        return Masks(context_idx=context, target_idx=target)
