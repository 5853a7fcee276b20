"""ViT encoder over time-frequency patch tokens, running only on the tokens it is asked to keep."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial, reduce

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from ajepa.errors import ConfigError
from ajepa.masking.gather import apply_masks
from ajepa.models.pos_embed import SinCosPosEmbed2d
from ajepa.models.sizes import EncoderConfig

LN_EPS = 1e-6


def init_vit_weights(module: nn.Module) -> None:
    """I-JEPA / MAE init: truncated normal (std 0.02) Linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def rescale_residual_projections(blocks: nn.ModuleList) -> None:
    """Scale each block's residual output projections by 1/sqrt(2 * layer) so deep stacks start tame."""
    for layer, block in enumerate(blocks, start=1):
        scale = 1.0 / math.sqrt(2.0 * layer)
        with torch.no_grad():
            block.attn.proj.weight.mul_(scale)
            block.mlp.fc2.weight.mul_(scale)


def make_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: float = 0.0) -> nn.ModuleList:
    """A stack of timm pre-norm transformer blocks (qkv bias, fused SDPA attention, linear drop-path ramp)."""
    rates = [drop_path * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]  # a linear ramp
    return nn.ModuleList(
        Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=rate,
              norm_layer=partial(nn.LayerNorm, eps=LN_EPS))
        for rate in rates
    )


class ViTEncoder(nn.Module):
    """Patch-vector ViT encoder.

    ``forward(tokens (B, N, pf*pt), grid (F_p, T_p), keep_idx (B, M) | None) -> (B, M or N, D)``.
    A Linear layer on flattened patches is the same map as a (pf, pt)-strided conv patch embedding.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        self.patch_embed = nn.Linear(cfg.patch_dim, cfg.embed_dim)
        self.pos_embed = SinCosPosEmbed2d(cfg.embed_dim)
        self.blocks = make_blocks(cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio, cfg.drop_path)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)
        self.apply(init_vit_weights)
        rescale_residual_projections(self.blocks)

    @property
    def num_hidden_states(self) -> int:
        """``depth + 1``: the patch embedding (hidden state 0) and each block's output."""
        return len(self.blocks) + 1

    def forward(self, tokens: Tensor, grid: tuple[int, int], keep_idx: Tensor | None = None) -> Tensor:
        """``tokens (B, N, P)``, ``keep_idx (B, M)`` -> the final (normalised) output ``(B, M, D)``; ``(B, N, D)``
        when keep_idx is None."""
        return self.forward_intermediates(tokens, grid, [len(self.blocks)], keep_idx)[0]

    def forward_intermediates(self, tokens: Tensor, grid: tuple[int, int], indices: Sequence[int],
                              keep_idx: Tensor | None = None, norm: bool = True) -> list[Tensor]:
        """The hidden states ``indices`` (ascending, in ``0..depth``), each ``(B, M or N, D)`` (timm's shape).

        Hidden state 0 is the patch embedding plus positions, ``i`` the output of block ``i``. With ``norm`` each is
        normalised, the last (``depth``) by the encoder's own final LayerNorm (it is then :meth:`forward`'s output)
        and the others by a LayerNorm without parameters, so that no layer dominates a mean by its scale; without
        it they are the raw residual stream (what data2vec's instance-normalised targets start from). The blocks
        after the highest index are not run.
        """
        b, n, p = tokens.shape
        if p != self.cfg.patch_dim:
            raise ConfigError(f"tokens have {p} values per patch but the encoder expects "
                              f"{self.cfg.patch_dim} (patch {self.cfg.patch})")
        if n != grid[0] * grid[1]:
            raise ConfigError(f"{n} tokens do not fill the grid {tuple(grid)}")
        indices = [int(i) for i in indices]
        if not indices or indices != sorted(set(indices)) or not 0 <= indices[0] <= indices[-1] <= len(self.blocks):
            raise ConfigError(f"hidden-state indices must be ascending and in 0..{len(self.blocks)}, got {indices}")
        pos = self.pos_embed(grid, tokens.device, tokens.dtype)
        if keep_idx is None:
            x = self.patch_embed(tokens) + pos
        else:
            assert keep_idx.dim() == 2, f"keep_idx must be (B, M), got {tuple(keep_idx.shape)}"
            # Gathering before the (token-wise) patch embedding is the same as after it and skips dropped tokens.
            x = self.patch_embed(apply_masks(tokens, keep_idx)) + pos[keep_idx]
        last = len(self.blocks)
        wanted = set(indices)
        states = []
        for i in range(indices[-1] + 1):
            if i > 0:
                x = self.blocks[i - 1](x)
            if i in wanted:
                if not norm:
                    states.append(x)
                elif i == last:
                    states.append(self.norm(x))
                else:
                    states.append(F.layer_norm(x, x.shape[-1:], eps=LN_EPS))
        return states


def last_layers(count: int, depth: int) -> list[int]:
    """The indices of the last ``count`` of an encoder's ``depth + 1`` hidden states."""
    if not 1 <= count <= depth + 1:
        raise ConfigError(f"layers must be in 1..{depth + 1} (depth + 1 hidden states), got {count}")
    return list(range(depth + 1 - count, depth + 1))


def mean_of_layers(states: Sequence[Tensor]) -> Tensor:
    """The mean of equally shaped hidden states, summed in order (the layer read-out and layer-averaged targets)."""
    return reduce(torch.add, states) / len(states)
