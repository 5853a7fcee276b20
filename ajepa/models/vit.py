"""ViT encoder over time-frequency patch tokens, running only on the tokens it is asked to keep."""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from ajepa.errors import ConfigError
from ajepa.models.pos_embed import SinCosPosEmbed2d
from ajepa.models.sizes import EncoderConfig

LN_EPS = 1e-6


def apply_masks(x: Tensor, idx: Tensor) -> Tensor:
    """Gather tokens: ``x (B, N, D)`` by ``idx (B, ...)`` int64 -> ``(B, ..., D)``.

    One ``torch.gather`` on an expanded (stride-0, copy-free) index; its backward is a scatter-add.
    """
    if x.dim() != 3:
        raise ConfigError(f"apply_masks expects x of shape (B, N, D), got {tuple(x.shape)}")
    if idx.dim() < 2 or idx.shape[0] != x.shape[0]:
        raise ConfigError(f"apply_masks index of shape {tuple(idx.shape)} does not match batch {x.shape[0]}")
    b, d = x.shape[0], x.shape[-1]
    flat = idx.reshape(b, -1, 1).expand(-1, -1, d)
    return torch.gather(x, 1, flat).reshape(*idx.shape, d)


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
    rates = torch.linspace(0.0, drop_path, depth).tolist()
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

    def forward(self, tokens: Tensor, grid: tuple[int, int], keep_idx: Tensor | None = None) -> Tensor:
        """``tokens (B, N, P)``, ``keep_idx (B, M)`` -> the final (normalised) output ``(B, M, D)``; ``(B, N, D)``
        when keep_idx is None."""
        return self.forward_layers(tokens, grid, 1, keep_idx)

    def forward_layers(self, tokens: Tensor, grid: tuple[int, int], layers: int,
                       keep_idx: Tensor | None = None) -> Tensor:
        """The mean of the last ``layers`` hidden states ``(B, M or N, D)``; ``layers=1`` is :meth:`forward`.

        The hidden states are the patch embedding (plus positions) and each block's output, ``depth + 1`` in all,
        so ``layers = depth + 1`` includes the embedding layer. Each is normalised without affine parameters first
        (the final one by the encoder's own ``norm``), so no layer dominates the mean by its scale. The one layer
        selection of the package: data2vec-style targets (``objective.target_layers``) and SUPERB-style read-outs
        (``average_layers``) both come through here.
        """
        b, n, p = tokens.shape
        if p != self.cfg.patch_dim:
            raise ConfigError(f"tokens have {p} values per patch but the encoder expects "
                              f"{self.cfg.patch_dim} (patch {self.cfg.patch})")
        if n != grid[0] * grid[1]:
            raise ConfigError(f"{n} tokens do not fill the grid {tuple(grid)}")
        if not 1 <= layers <= len(self.blocks) + 1:
            raise ConfigError(f"layers must be in 1..{len(self.blocks) + 1} (depth + 1 hidden states), got {layers}")
        pos = self.pos_embed(grid, tokens.device, tokens.dtype)
        if keep_idx is None:
            x = self.patch_embed(tokens) + pos
        else:
            assert keep_idx.dim() == 2, f"keep_idx must be (B, M), got {tuple(keep_idx.shape)}"
            # Gathering before the (token-wise) patch embedding is the same as after it and skips dropped tokens.
            x = self.patch_embed(apply_masks(tokens, keep_idx)) + pos[keep_idx]
        last = len(self.blocks) - 1
        # The embedding layer is hidden state 0; it joins the mean only when every hidden state is averaged.
        total = F.layer_norm(x, x.shape[-1:], eps=LN_EPS) if layers > len(self.blocks) else None
        for i, block in enumerate(self.blocks):
            x = block(x)
            if last - layers < i < last:
                h = F.layer_norm(x, x.shape[-1:], eps=LN_EPS)
                total = h if total is None else total + h
        out = self.norm(x)
        return out if total is None else (total + out) / layers
