"""Narrow ViT predictor: from context embeddings and target positions to target representations."""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from ajepa.errors import ConfigError
from ajepa.models.pos_embed import SinCosPosEmbed2d
from ajepa.models.sizes import PredictorConfig
from ajepa.models.vit import LN_EPS, init_vit_weights, make_blocks, rescale_residual_projections


class Predictor(nn.Module):
    """``forward(context (B, N_ctx, D_enc), context_idx (B, N_ctx), target_idx (B, K, N_tgt), grid)
    -> (B, K, N_tgt, out_dim)``.

    Each target position gets the one learned mask token plus its position embedding, so the only
    thing a mask token carries in is where it is. ``cfg.joint_targets`` chooses one sequence
    ``(B, N_ctx + K*N_tgt)`` for all blocks, or I-JEPA's ``(B*K, N_ctx + N_tgt)`` with the context repeated.
    """

    def __init__(self, encoder_dim: int, cfg: PredictorConfig, out_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(encoder_dim, cfg.embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = SinCosPosEmbed2d(cfg.embed_dim)
        self.blocks = make_blocks(cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)
        self.proj = nn.Linear(cfg.embed_dim, out_dim)
        self.apply(init_vit_weights)
        rescale_residual_projections(self.blocks)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: Tensor, context_idx: Tensor, target_idx: Tensor, grid: tuple[int, int]) -> Tensor:
        b, n_ctx, _ = context.shape
        if context_idx.shape != (b, n_ctx):
            raise ConfigError(f"context_idx {tuple(context_idx.shape)} does not match context {tuple(context.shape)}")
        if target_idx.dim() != 3 or target_idx.shape[0] != b:
            raise ConfigError(f"target_idx must be (B={b}, K, N_tgt), got {tuple(target_idx.shape)}")
        k, n_tgt = target_idx.shape[1:]
        d = self.cfg.embed_dim
        pos = self.pos_embed(grid, context.device, context.dtype)
        ctx = self.embed(context) + pos[context_idx]
        tgt = self.mask_token + pos[target_idx]  # (B, K, N_tgt, d)
        if self.cfg.joint_targets:
            x = torch.cat([ctx, tgt.reshape(b, k * n_tgt, d)], dim=1)
        else:
            x = torch.cat([ctx.repeat_interleave(k, dim=0), tgt.reshape(b * k, n_tgt, d)], dim=1)
        for block in self.blocks:
            x = block(x)
        # Norm and projection are token-wise: apply them to the target outputs only.
        out = self.proj(self.norm(x[:, n_ctx:]))
        return out.reshape(b, k, n_tgt, -1)
