"""data2vec 2.0 / EAT's objective: regress the instance-normalised mean of the target encoder's top blocks at
every masked token (with ``masking=inverse`` and several ``copies``, the multi-mask latent prediction of EAT)."""

from __future__ import annotations

from functools import reduce

import torch
import torch.nn.functional as F
from torch import Tensor

from ajepa.objectives.base import ObjectiveBase, top_layers
from ajepa.objectives.losses import centre_per_position, instance_norm, regression_loss


class Data2VecObjective(ObjectiveBase):
    """Targets: each of the teacher's last ``target_layers`` block outputs (raw residual stream; ``None``: every
    block) normalised per clip and channel over its audio tokens, then averaged (and layer-normed when
    ``target_layernorm``). Instance normalisation removes each clip's per-channel offset, which a predictor could
    otherwise fit without reading the context. No parameters."""

    uses_target_encoder = True
    teacher_norm = False

    def teacher_layers(self, depth: int) -> list[int]:
        """The last ``target_layers`` block outputs (the patch embedding is never a target here)."""
        return top_layers(self.cfg.target_layers, depth, first=1)

    def output_dim(self, embed_dim: int, patch_dim: int) -> int:
        """The predictor regresses encoder features."""
        return embed_dim

    def target_tokens(self, tokens: Tensor, teacher: list[Tensor] | None, valid: Tensor | None) -> Tensor:
        """``(B, N, D)``: the mean of the instance-normalised states."""
        h = reduce(torch.add, [instance_norm(s.float(), valid) for s in teacher]) / len(teacher)
        h = F.layer_norm(h, h.shape[-1:]) if self.cfg.target_layernorm else h
        return centre_per_position(h, valid) if self.cfg.position_centring else h

    def forward(self, pred: Tensor, targets: Tensor, weight: Tensor | None) -> Tensor:
        """``pred``, ``targets`` ``(R, K, N_tgt, D)``; ``weight (R, K, N_tgt)`` or None -> the scalar loss."""
        return regression_loss(pred, targets, self.cfg.loss, weight)
