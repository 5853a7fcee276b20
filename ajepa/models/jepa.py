"""Audio-JEPA: context encoder + EMA target encoder + predictor, with an MAE baseline objective."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ajepa.errors import ConfigError
from ajepa.models.predictor import Predictor
from ajepa.models.sizes import EncoderConfig, PredictorConfig
from ajepa.models.vit import ViTEncoder, apply_masks

__all__ = ["AudioJEPA", "ObjectiveConfig", "apply_masks", "normalize_patches"]

OBJECTIVES = ("jepa", "mae")
LOSSES = ("smooth_l1", "l2", "l1")


@dataclass
class ObjectiveConfig:
    """``name``: jepa (predict EMA-encoder features) | mae (reconstruct normalised patches, MSE).

    ``loss`` and ``target_layernorm`` apply to jepa only. ``ignore_padding``: targets in zero-padded time
    columns of short clips are left out of the loss (the trainer passes the valid tokens).
    """

    name: str = "jepa"
    loss: str = "smooth_l1"
    target_layernorm: bool = True
    ignore_padding: bool = True

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.name!r}; choose one of {OBJECTIVES}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {LOSSES}")


def normalize_patches(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """Standardise each patch vector by its own mean and (population) variance, Audio-MAE style. ``(..., P)``."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True, unbiased=False)
    return (patches - mean) * torch.rsqrt(var + eps)


def regression_loss(pred: Tensor, target: Tensor, kind: str, weight: Tensor | None = None) -> Tensor:
    """Mean element-wise loss over ``(..., D)``; computed in fp32 so mixed precision cannot underflow it.

    ``weight`` (``pred.shape[:-1]``, bool or float) restricts the mean to the tokens it selects, e.g. to keep
    zero-padding out of the objective; ``None`` averages over every token.
    """
    pred, target = pred.float(), target.float()
    fn = {"smooth_l1": F.smooth_l1_loss, "l2": F.mse_loss, "l1": F.l1_loss}[kind]
    if weight is None:
        return fn(pred, target)
    per_token = fn(pred, target, reduction="none").mean(-1)
    weight = weight.to(per_token.dtype)
    return (per_token * weight).sum() / weight.sum().clamp(min=1.0)


class AudioJEPA(nn.Module):
    """The pre-training model.

    ``forward(tokens (B, N, P), grid, context_idx (B, N_ctx), target_idx (B, K, N_tgt)) -> dict`` with
    ``loss``, ``target_std`` and ``target_embeddings`` (detached ``(M, D)``).

    jepa: the target encoder (an EMA copy, never trained by gradients, always in eval mode) encodes all
    tokens; its (layer-normed) features at the target positions are regressed by the predictor from the
    context encoder's output. mae: the predictor regresses normalised target patches instead and no
    target encoder is built (``target_encoder is None``; ``update_target`` is a no-op); the monitors then
    describe the context features, so ``target_embeddings`` is ``(B * N_ctx, D)``.
    """

    def __init__(self, encoder: EncoderConfig, predictor: PredictorConfig, objective: ObjectiveConfig) -> None:
        super().__init__()
        self.encoder_cfg, self.predictor_cfg, self.objective = encoder, predictor, objective
        self.context_encoder = ViTEncoder(encoder)
        self.target_encoder: ViTEncoder | None = None
        if objective.name == "jepa":
            self.target_encoder = copy.deepcopy(self.context_encoder).requires_grad_(False).eval()
            out_dim = encoder.embed_dim
        else:
            out_dim = encoder.patch_dim
        self.predictor = Predictor(encoder.embed_dim, predictor, out_dim)

    def train(self, mode: bool = True) -> AudioJEPA:
        super().train(mode)
        if self.target_encoder is not None:
            self.target_encoder.eval()  # no drop-path on targets, whatever the mode of the rest
        return self

    def forward(self, tokens: Tensor, grid: tuple[int, int], context_idx: Tensor,
                target_idx: Tensor, token_valid: Tensor | None = None) -> dict[str, Tensor]:
        """``token_valid`` (B, N) bool marks tokens that hold audio (not zero-padding); targets outside it do not
        count in the loss, so a model is never trained to predict the padding of short clips."""
        if context_idx.dim() != 2 or target_idx.dim() != 3:
            raise ConfigError(f"expected context_idx (B, N_ctx) and target_idx (B, K, N_tgt), got "
                              f"{tuple(context_idx.shape)} and {tuple(target_idx.shape)}")
        if self.target_encoder is not None:
            with torch.no_grad():
                h = self.target_encoder(tokens, grid)
                if self.objective.target_layernorm:
                    h = F.layer_norm(h, h.shape[-1:])
                targets = apply_masks(h, target_idx)  # (B, K, N_tgt, D)
            loss_kind = self.objective.loss
        else:
            targets = normalize_patches(apply_masks(tokens, target_idx))  # (B, K, N_tgt, P)
            loss_kind = "l2"
        z = self.context_encoder(tokens, grid, keep_idx=context_idx)
        pred = self.predictor(z, context_idx, target_idx, grid)
        weight = None if token_valid is None else token_valid.gather(1, target_idx.flatten(1)).view_as(target_idx)
        loss = regression_loss(pred, targets, loss_kind, weight)
        monitored = targets if self.target_encoder is not None else z
        embeddings = monitored.detach().reshape(-1, monitored.shape[-1])
        return {
            "loss": loss,
            "target_std": embeddings.float().std(dim=0).mean(),
            "target_embeddings": embeddings,
        }

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """EMA in place: ``target = momentum * target + (1 - momentum) * context``; no-op for mae."""
        if self.target_encoder is None:
            return
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"EMA momentum must be in [0, 1], got {momentum}")
        # Lists rebuilt per call (cheap) so they can never go stale after load_state_dict or .to().
        target = list(self.target_encoder.parameters())
        online = list(self.context_encoder.parameters())
        torch._foreach_lerp_(target, online, 1.0 - momentum)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups for the trainable parameters: ``decay`` (matrices) and ``no_decay`` (biases, norms,
        the mask token and other tensors with <= 1 dim). The groups carry a ``name`` key."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            if param.dim() <= 1 or name.endswith(".bias") or name.endswith("mask_token"):
                no_decay.append(param)
            else:
                decay.append(param)
        return [
            {"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        ]
