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

__all__ = ["AudioJEPA", "ObjectiveConfig", "apply_masks", "instance_norm", "normalize_patches", "variance_covariance"]

OBJECTIVES = ("jepa", "mae")
LOSSES = ("smooth_l1", "l2", "l1")
TARGET_INPUTS = ("all", "block")


@dataclass
class ObjectiveConfig:
    """``name``: jepa (predict EMA-encoder features) | mae (reconstruct normalised patches, MSE).

    ``loss``, ``target_layernorm`` and ``target_layers`` apply to jepa only. ``target_layers``: the targets are the
    mean of the target encoder's last ``target_layers`` block outputs (each normalised; 1 = the final output, as in
    I-JEPA; more is the data2vec choice). ``target_input``: ``all`` (the target encoder sees every token, I-JEPA)
    or ``block`` (it sees only the patches of each target block, M2D-style, so targets describe the block's own
    content rather than what the context already implies). ``variance_weight`` / ``covariance_weight``: VICReg
    terms on the context encoder's output tokens (:func:`variance_covariance`), 0 = off; they apply to both
    objectives. ``target_instance_norm``: standardise each target channel over the clip's tokens before the layer
    norm (data2vec's audio targets, :func:`instance_norm`). ``prediction_weight`` scales the prediction loss;
    0 with VICReg terms on is the ablation that trains the encoder by the regulariser alone.
    ``ignore_padding``: targets in zero-padded time columns of short clips are left out of the loss, and so are
    padded context tokens from the VICReg terms (the trainer passes the valid tokens).
    """

    name: str = "jepa"
    loss: str = "smooth_l1"
    target_layernorm: bool = True
    target_layers: int = 1
    target_input: str = "all"
    target_instance_norm: bool = False
    variance_weight: float = 0.0
    covariance_weight: float = 0.0
    prediction_weight: float = 1.0
    ignore_padding: bool = True

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.name!r}; choose one of {OBJECTIVES}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {LOSSES}")
        if self.target_input not in TARGET_INPUTS:
            raise ConfigError(f"unknown target_input {self.target_input!r}; choose one of {TARGET_INPUTS}")
        if min(self.variance_weight, self.covariance_weight, self.prediction_weight) < 0:
            raise ConfigError("variance_weight, covariance_weight and prediction_weight must be >= 0")
        if self.prediction_weight == 0 and self.variance_weight == 0 and self.covariance_weight == 0:
            raise ConfigError("every loss term has weight 0: nothing would be trained")
        if self.target_layers < 1:
            raise ConfigError(f"target_layers must be >= 1, got {self.target_layers}")


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


def instance_norm(h: Tensor, valid: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Standardise each channel over the tokens of each sample: ``h (B, N, D)`` -> ``(B, N, D)``.

    data2vec's target normalisation for audio: removing each clip's per-channel mean takes away the component all
    of its tokens share, which is exactly the direction a collapsing encoder would put everything in, so the targets
    keep describing how tokens differ from each other. ``valid (B, N)`` bool restricts the statistics to real audio
    (zero-padding would otherwise dominate them for short clips); the output is computed for every token.
    """
    h = h.float()
    w = torch.ones(h.shape[:2], dtype=h.dtype, device=h.device) if valid is None else valid.to(h.dtype)
    w = w[..., None]
    count = w.sum(1, keepdim=True).clamp(min=1.0)
    mean = (h * w).sum(1, keepdim=True) / count
    var = ((h - mean).pow(2) * w).sum(1, keepdim=True) / count
    return (h - mean) * torch.rsqrt(var + eps)


def variance_covariance(z: Tensor, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """VICReg's anti-collapse terms over a set of feature vectors ``z (M, D)``, in fp32.

    ``variance``: mean over dimensions of ``relu(1 - std)``, which pushes every dimension to keep a unit spread
    across the set; ``covariance``: the sum of squared off-diagonal covariances divided by ``D``, which pushes the
    dimensions to decorrelate. Together they keep the effective rank from collapsing onto a few directions.
    """
    z = z.float()
    if z.shape[0] < 2:
        raise ConfigError("variance/covariance regularisation needs at least two feature vectors")
    z = z - z.mean(dim=0)
    std = torch.sqrt(z.var(dim=0) + eps)
    variance = F.relu(1.0 - std).mean()
    d = z.shape[1]
    cov = (z.T @ z) / (z.shape[0] - 1)
    off_diagonal = cov.pow(2).sum() - cov.diagonal().pow(2).sum()
    return variance, off_diagonal / d


class AudioJEPA(nn.Module):
    """The pre-training model.

    ``forward(tokens (B, N, P), grid, context_idx (B, N_ctx), target_idx (B, K, N_tgt)) -> dict`` with
    ``loss``, ``loss_terms`` (the detached, unweighted ``prediction`` loss and, when the VICReg terms are on,
    ``variance`` and ``covariance``), ``target_std`` and ``target_embeddings`` (detached ``(M, D)``).

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
        if objective.name == "jepa" and objective.target_layers > encoder.depth:
            raise ConfigError(f"objective.target_layers={objective.target_layers} exceeds the encoder depth {encoder.depth}")
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
                targets = self._targets(tokens, grid, target_idx, token_valid)  # (B, K, N_tgt, D)
            loss_kind = self.objective.loss
        else:
            targets = normalize_patches(apply_masks(tokens, target_idx))  # (B, K, N_tgt, P)
            loss_kind = "l2"
        z = self.context_encoder(tokens, grid, keep_idx=context_idx)
        pred = self.predictor(z, context_idx, target_idx, grid)
        weight = None if token_valid is None else token_valid.gather(1, target_idx.flatten(1)).view_as(target_idx)
        obj = self.objective
        prediction = regression_loss(pred, targets, loss_kind, weight)
        loss = obj.prediction_weight * prediction
        terms = {"prediction": prediction.detach()}
        if obj.variance_weight > 0 or obj.covariance_weight > 0:
            features = z.reshape(-1, z.shape[-1])
            if token_valid is not None:
                # Padding tokens all encode the same silence; counting them would spend the regulariser on
                # spreading a constant input instead of the audio (FSDD clips are ~60% padding at 1 s crops).
                features = features[token_valid.gather(1, context_idx).reshape(-1)]
            if features.shape[0] >= 2:
                var_term, cov_term = variance_covariance(features)
                loss = loss + obj.variance_weight * var_term + obj.covariance_weight * cov_term
            else:
                var_term = cov_term = torch.zeros((), device=z.device)
            terms.update(variance=var_term.detach(), covariance=cov_term.detach())
        monitored = targets if self.target_encoder is not None else z
        embeddings = monitored.detach().reshape(-1, monitored.shape[-1])
        return {
            "loss": loss,
            "loss_terms": terms,
            "target_std": embeddings.float().std(dim=0).mean(),
            "target_embeddings": embeddings,
        }

    def _targets(self, tokens: Tensor, grid: tuple[int, int], target_idx: Tensor,
                 token_valid: Tensor | None = None) -> Tensor:
        """The target encoder's features at ``target_idx (B, K, N_tgt)`` -> ``(B, K, N_tgt, D)``."""
        obj = self.objective
        if obj.target_input == "all":
            h = self.target_encoder(tokens, grid, average_last=obj.target_layers)
            if obj.target_instance_norm:
                h = instance_norm(h, token_valid)
            h = apply_masks(h, target_idx)
        else:  # "block": each target block is encoded from its own patches only (M2D-style)
            b, k, m = target_idx.shape
            h = self.target_encoder(tokens.repeat_interleave(k, dim=0), grid, keep_idx=target_idx.reshape(b * k, m),
                                    average_last=obj.target_layers)
            if obj.target_instance_norm:
                h = instance_norm(h)
            h = h.view(b, k, m, -1)
        return F.layer_norm(h, h.shape[-1:]) if obj.target_layernorm else h

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
