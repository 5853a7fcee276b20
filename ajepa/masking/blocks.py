"""I-JEPA-style block masks: target blocks, and the context left around them, on the (F_p, T_p) patch grid.

Token order is time-major (``n = t * F_p + f``), so every mask here is built as a ``(B, T_p, F_p)``
boolean grid and flattened.

Strategies (one per batch; all samples of a batch share one target block size so that the mask
tensors are rectangular):

- ``multiblock``: K rectangles of ``h x w`` cells (I-JEPA style, scale and aspect drawn per batch).
- ``time``: K spans of ``w`` time columns covering every frequency row.
- ``frequency``: K bands of ``h`` frequency rows covering every time column.
- ``curriculum``: ``multiblock`` with probability :func:`curriculum_probability` of the step, else
  ``time``. Contiguous time spans are the easier task (a span is predictable from both of its
  neighbours in time, which audio varies slowly along), joint time-frequency blocks the harder one,
  so the mix moves from mostly spans to only blocks.

Target blocks have their top-left corner uniform over *all* valid positions, so the last row and
column are reachable. The context is one large block (``context_scale`` of the grid, square
clamped to the grid) minus the union of the targets, then cut to the batch minimum by a random
subset (never by truncation, which would bias against the end of the clip).

``min_context`` is guaranteed without unbounded loops:

1. the batch's block size is shrunk up front so that one block leaves ``min_context`` cells;
2. samples whose context is too small are redrawn (context block and targets) at most
   ``max_attempts`` times, vectorised over the failing samples;
3. still-failing samples drop the context-block restriction (the whole grid minus the targets);
4. still-failing samples move their target blocks onto their first block, last block first,
   until the context is large enough. After all K are collapsed the context is the grid minus one
   block, which step 1 made large enough. Block shapes never change in steps 2-4, so every block
   of every sample keeps exactly ``h * w`` target tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ajepa.errors import ConfigError
from ajepa.masking.config import BLOCK_STRATEGIES, MaskingConfig, Masks

__all__ = ["TimeFrequencyBlockMasker", "curriculum_probability", "random_equal_subset", "rect_mask"]


def curriculum_probability(step: int, total_steps: int, c0: float) -> float:
    """A-JEPA curriculum: probability of time-frequency block masking at ``step``.

    ``p(s) = min(1, sqrt(s * (1 - c0^2) / S) + c0^2)``: ``c0^2`` at step 0, 1 from step ``S`` on
    (``sqrt(1 - c0^2) >= 1 - c0^2`` makes ``p(S) >= 1``), non-decreasing in between.
    """
    if total_steps < 1:
        raise ConfigError(f"curriculum total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= c0 <= 1.0:
        raise ConfigError(f"curriculum c0 must be in [0, 1], got {c0}")
    if step < 0:
        raise ConfigError(f"curriculum step must be >= 0, got {step}")
    c2 = c0 * c0
    return min(1.0, math.sqrt(step * (1.0 - c2) / total_steps) + c2)


def _clamp(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(round(x))))


def _block_shape(area: float, aspect: float, grid: tuple[int, int]) -> tuple[int, int]:
    """Integer (h, w) of about ``area`` cells with h/w ~ ``aspect``, clamped to the grid.

    When the width hits the grid edge the height takes up the remaining area, so that a block on a
    short clip (small T_p) still covers about ``area`` cells instead of silently shrinking.
    """
    n_f, n_t = grid
    h = _clamp(math.sqrt(area * aspect), 1, n_f)
    w = _clamp(area / h, 1, n_t)
    if w == n_t:
        h = _clamp(area / w, 1, n_f)
    return h, w


def _shrink_to(h: int, w: int, limit: int) -> tuple[int, int]:
    """Largest-ish (h', w') <= (h, w) with about the same aspect and ``h' * w' <= limit`` (>= 1)."""
    if h * w <= limit:
        return h, w
    factor = math.sqrt(limit / (h * w))
    h2 = max(1, min(h, math.floor(h * factor)))
    w2 = max(1, min(w, limit // h2))
    return h2, w2


class TimeFrequencyBlockMasker:
    """Draws :class:`Masks` for a batch on a fixed ``(F_p, T_p)`` grid.

    Never overlaps context and targets, never loops without bound, reaches every cell.
    ``__call__(B, generator, step)`` -> ``context_idx (B, N_ctx)``, ``target_idx (B, K, N_tgt)``.
    """

    def __init__(self, cfg: MaskingConfig, grid: tuple[int, int], max_attempts: int = 20) -> None:
        n_f, n_t = (int(g) for g in grid)
        if n_f < 1 or n_t < 1:
            raise ConfigError(f"patch grid must be at least 1 x 1, got {tuple(grid)}")
        if cfg.strategy not in BLOCK_STRATEGIES:
            raise ConfigError(f"masking strategy {cfg.strategy!r} is not a block strategy {BLOCK_STRATEGIES}; "
                              "ajepa.masking.build_masker picks the masker of any strategy")
        self.cfg = cfg
        self.grid = (n_f, n_t)
        self.num_tokens = n_f * n_t
        self.max_attempts = int(max_attempts)
        # An empty context cannot be encoded, so at least one token is always kept.
        self.min_context = max(1, int(cfg.min_context))
        self._limit = self.num_tokens - self.min_context  # most target cells one block may take
        # The smallest target each strategy can shrink to: a cell, a time column, a frequency row.
        smallest = {"multiblock": 1, "time": n_f, "frequency": n_t}
        used = ("multiblock", "time") if cfg.strategy == "curriculum" else (cfg.strategy,)
        for name in used:
            if smallest[name] > self._limit:
                raise ConfigError(
                    f"masking strategy {name!r} cannot fit a {n_f} x {n_t} patch grid: its smallest "
                    f"target block ({smallest[name]} token(s)) plus min_context={self.min_context} "
                    f"context tokens need {smallest[name] + self.min_context} tokens, but the grid "
                    f"has {self.num_tokens}. Use longer clips, a smaller min_context or another strategy."
                )
            # Targets may overlap, but more than twice the grid's worth of them is a typo that costs hours.
            if int(cfg.num_targets) * smallest[name] > 2 * self.num_tokens:
                raise ConfigError(
                    f"masking.num_targets={cfg.num_targets} blocks of at least {smallest[name]} token(s) each "
                    f"({name!r}) would cover a {n_f} x {n_t} patch grid of {self.num_tokens} tokens more than twice; "
                    f"use at most {2 * self.num_tokens // smallest[name]} targets, longer clips or another strategy.")

    def __call__(self, batch_size: int, generator: torch.Generator, step: int = 0) -> Masks:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        strategy = self._pick_strategy(generator, step)
        h, w = self._target_shape(strategy, generator)
        hc, wc = self._context_shape(generator)
        target_idx, context = self._place(batch_size, (h, w), (hc, wc), generator)
        return Masks(context_idx=random_equal_subset(context, generator), target_idx=target_idx)

    def _pick_strategy(self, generator: torch.Generator, step: int) -> str:
        cfg = self.cfg
        if cfg.strategy != "curriculum":
            return cfg.strategy
        p = curriculum_probability(step, cfg.curriculum_steps, cfg.curriculum_c0)
        return "multiblock" if torch.rand((), generator=generator).item() < p else "time"

    def _target_shape(self, strategy: str, generator: torch.Generator) -> tuple[int, int]:
        n_f, n_t = self.grid
        u_scale, u_aspect = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        lo, hi = self.cfg.target_scale
        scale = lo + (hi - lo) * u_scale
        if strategy == "time":
            return n_f, min(_clamp(scale * n_t, 1, n_t), self._limit // n_f)
        if strategy == "frequency":
            return min(_clamp(scale * n_f, 1, n_f), self._limit // n_t), n_t
        a_lo, a_hi = (math.log(a) for a in self.cfg.target_aspect)
        aspect = math.exp(a_lo + (a_hi - a_lo) * u_aspect)
        h, w = _block_shape(scale * self.num_tokens, aspect, self.grid)
        return _shrink_to(h, w, self._limit)

    def _context_shape(self, generator: torch.Generator) -> tuple[int, int]:
        lo, hi = self.cfg.context_scale
        scale = lo + (hi - lo) * torch.rand((), generator=generator, dtype=torch.float64).item()
        return _block_shape(scale * self.num_tokens, 1.0, self.grid)

    def _place(
        self,
        batch: int,
        shape: tuple[int, int],
        ctx_shape: tuple[int, int],
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        """Target indices (B, K, h*w) and context mask (B, F_p*T_p) meeting ``min_context``."""
        n_f, n_t = self.grid
        h, w = shape
        k = int(self.cfg.num_targets)
        # Time-major offsets of a block's cells from its top-left token: ascending, so blocks
        # come out sorted without a sort.
        offsets = (torch.arange(w).unsqueeze(1) * n_f + torch.arange(h)).reshape(-1)

        def draw(rows: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
            top = torch.randint(0, n_f - h + 1, (rows, k), generator=generator)
            left = torch.randint(0, n_t - w + 1, (rows, k), generator=generator)
            c_top = torch.randint(0, n_f - ctx_shape[0] + 1, (rows,), generator=generator)
            c_left = torch.randint(0, n_t - ctx_shape[1] + 1, (rows,), generator=generator)
            return top, left, c_top, c_left

        def context_of(start: Tensor, c_top: Tensor | None, c_left: Tensor | None) -> Tensor:
            # start (b, K) top-left tokens; c_top/c_left None means the whole grid is the block.
            if c_top is None:
                ctx = torch.ones(start.shape[0], self.num_tokens, dtype=torch.bool)
            else:
                ctx = rect_mask(c_top, c_left, ctx_shape, self.grid)
            targets = (start.unsqueeze(-1) + offsets).flatten(1)
            return ctx.scatter_(1, targets, False)

        top, left, c_top, c_left = draw(batch)
        start = left * n_f + top
        context = context_of(start, c_top, c_left)
        bad = context.sum(1) < self.min_context
        for _ in range(self.max_attempts):
            if not bad.any():
                break
            rows = bad.nonzero().squeeze(1)
            top, left, c_top, c_left = draw(rows.numel())
            start[rows] = left * n_f + top
            context[rows] = context_of(start[rows], c_top, c_left)
            bad[rows] = context[rows].sum(1) < self.min_context
        # Deterministic fallbacks: first the whole grid as context block, then collapse targets.
        for collapse in range(k, 0, -1):
            if not bad.any():
                break
            rows = bad.nonzero().squeeze(1)
            if collapse < k:
                start[rows, collapse] = start[rows, 0]
            context[rows] = context_of(start[rows], None, None)
            bad[rows] = context[rows].sum(1) < self.min_context
        if bad.any():  # unreachable: one block of <= _limit cells always leaves min_context
            raise RuntimeError("masking fallback failed to reach min_context; this is a bug")
        return start.unsqueeze(-1) + offsets, context


def rect_mask(top: Tensor, left: Tensor, shape: tuple[int, int], grid: tuple[int, int]) -> Tensor:
    """(b,) top rows and left columns of ``shape`` rectangles -> (b, F_p*T_p) time-major mask."""
    n_f, n_t = grid
    f = torch.arange(n_f)
    t = torch.arange(n_t)
    rows = (f >= top.unsqueeze(1)) & (f < (top + shape[0]).unsqueeze(1))  # (b, F_p)
    cols = (t >= left.unsqueeze(1)) & (t < (left + shape[1]).unsqueeze(1))  # (b, T_p)
    return (cols.unsqueeze(2) & rows.unsqueeze(1)).flatten(1)


def random_equal_subset(mask: Tensor, generator: torch.Generator) -> Tensor:
    """(B, N) bool -> (B, M) sorted indices: a uniform random subset of each row's True cells,
    with M the smallest row count, so rows stack without biasing which cells survive."""
    keep = int(mask.sum(1).min())
    keys = torch.rand(mask.shape, generator=generator)
    keys.masked_fill_(~mask, 2.0)  # rand is in [0, 1): masked-out cells are never among the smallest
    return keys.topk(keep, dim=1, largest=False, sorted=False).indices.sort(dim=1).values
