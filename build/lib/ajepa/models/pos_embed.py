"""Fixed 2-D sin-cos position embeddings for any time-frequency patch grid."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from ajepa.errors import ConfigError


def sincos_pos_embed_2d(
    dim: int,
    grid: tuple[int, int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """2-D sin-cos embedding of a ``(F_p, T_p)`` grid -> ``(F_p * T_p, dim)`` in time-major order.

    Row ``n = t * F_p + f`` holds ``[sin(f w), cos(f w), sin(t w), cos(t w)]`` with ``dim / 4``
    frequencies ``w_i = 10000 ** (-i / (dim / 4))``: the first half of the dims encodes the frequency
    row, the second half the time column. No table of fixed length exists, so any clip length works.
    """
    if dim < 4 or dim % 4:
        raise ConfigError(f"sin-cos position embedding needs dim to be a positive multiple of 4, got {dim}")
    f_p, t_p = (int(g) for g in grid)
    if f_p < 1 or t_p < 1:
        raise ConfigError(f"grid must be two positive ints (F_p, T_p), got {grid}")
    quarter = dim // 4
    # float64 keeps the high-frequency channels exact at long time positions before the cast.
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter)
    n = torch.arange(f_p * t_p, device=device)
    f_ang = (n % f_p).to(torch.float64)[:, None] * omega
    t_ang = torch.div(n, f_p, rounding_mode="floor").to(torch.float64)[:, None] * omega
    emb = torch.cat([f_ang.sin(), f_ang.cos(), t_ang.sin(), t_ang.cos()], dim=1)
    return emb.to(dtype)


class SinCosPosEmbed2d(nn.Module):
    """Caches :func:`sincos_pos_embed_2d` per (grid, device, dtype) for one model; holds no parameters.

    The cache is small (LRU) so that inference over many clip lengths cannot grow it without bound.
    """

    def __init__(self, dim: int, max_cached: int = 8) -> None:
        super().__init__()
        self.dim = dim
        self.max_cached = max_cached
        self._cache: OrderedDict[tuple, Tensor] = OrderedDict()

    def forward(self, grid: tuple[int, int], device: torch.device, dtype: torch.dtype) -> Tensor:
        """-> ``(F_p * T_p, dim)`` constant (no grad)."""
        key = (int(grid[0]), int(grid[1]), str(device), dtype)
        table = self._cache.get(key)
        if table is None:
            # Built outside inference mode so a table first made during embedding can still be used in training.
            with torch.inference_mode(False), torch.no_grad():
                table = sincos_pos_embed_2d(self.dim, grid, device=device, dtype=dtype)
            self._cache[key] = table
            if len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return table

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
