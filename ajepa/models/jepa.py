"""Audio-JEPA: a context encoder, an EMA target encoder and a predictor; the objective says what is predicted."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ajepa.errors import ConfigError
from ajepa.models.predictor import Predictor
from ajepa.models.sizes import EncoderConfig, PredictorConfig
from ajepa.models.vit import ViTEncoder
from ajepa.objectives import ObjectiveConfig, build_objective, build_regulariser

__all__ = ["AudioJEPA"]


class AudioJEPA(nn.Module):
    """The pre-training model.

    ``forward(tokens (B, N, P), grid, context_idx (B, N_ctx), target_idx (B, K, N_tgt), token_valid (B, N) | None)
    -> dict`` with ``loss``, ``loss_terms`` (detached, unweighted: ``prediction`` and, with the VICReg terms,
    ``variance`` and ``covariance``), ``target_std`` and ``target_embeddings`` (detached ``(M, D)``).

    The context encoder sees the context tokens; the predictor, with positional mask tokens, predicts the
    objective's targets at the target positions (:mod:`ajepa.objectives`). For jepa the targets come from the
    target encoder, an EMA copy of the context encoder that gradients never train and that is always in eval
    mode; mae has no target encoder (``target_encoder is None``, ``update_target`` is a no-op). The monitors
    describe the targets for jepa and the context features for mae (``target_embeddings`` is then
    ``(B * N_ctx, D)``): the representation that could collapse.
    """

    def __init__(self, encoder: EncoderConfig, predictor: PredictorConfig, objective: ObjectiveConfig) -> None:
        super().__init__()
        self.encoder_cfg, self.predictor_cfg, self.objective_cfg = encoder, predictor, objective
        self.objective = build_objective(objective)
        self.regulariser = build_regulariser(objective)
        self.context_encoder = ViTEncoder(encoder)
        self.target_encoder: ViTEncoder | None = None
        if self.objective.uses_target_encoder:
            if objective.target_layers > encoder.depth + 1:
                raise ConfigError(f"objective.target_layers={objective.target_layers} exceeds the encoder's "
                                  f"{encoder.depth + 1} hidden states (depth {encoder.depth} + the embedding)")
            self.target_encoder = copy.deepcopy(self.context_encoder).requires_grad_(False).eval()
        self.predictor = Predictor(encoder.embed_dim, predictor,
                                   self.objective.output_dim(encoder.embed_dim, encoder.patch_dim))

    def train(self, mode: bool = True) -> AudioJEPA:
        super().train(mode)
        if self.target_encoder is not None:
            self.target_encoder.eval()  # no drop-path on targets, whatever the mode of the rest
        return self

    def forward(self, tokens: Tensor, grid: tuple[int, int], context_idx: Tensor,
                target_idx: Tensor, token_valid: Tensor | None = None) -> dict[str, Tensor]:
        """``token_valid`` (B, N) bool marks tokens that hold audio (not zero-padding); targets outside it do not
        count in the loss, so a model is never trained to predict the padding of short clips."""
        assert context_idx.dim() == 2 and target_idx.dim() == 3, (
            f"expected context_idx (B, N_ctx) and target_idx (B, K, N_tgt), got "
            f"{tuple(context_idx.shape)} and {tuple(target_idx.shape)}")
        with torch.no_grad():
            targets = self.objective.targets(tokens, grid, target_idx, self.target_encoder)  # (B, K, N_tgt, D|P)
        z = self.context_encoder(tokens, grid, keep_idx=context_idx)
        pred = self.predictor(z, context_idx, target_idx, grid)
        weight = None if token_valid is None else token_valid.gather(1, target_idx.flatten(1)).view_as(target_idx)
        prediction = self.objective(pred, targets, weight)
        loss, terms = prediction, {"prediction": prediction.detach()}
        if self.regulariser is not None:
            valid = None if token_valid is None else token_valid.gather(1, context_idx)
            extra, extra_terms = self.regulariser(z, valid)
            loss = loss + extra
            terms.update(extra_terms)
        monitored = self.objective.monitored(targets, z)
        embeddings = monitored.detach().reshape(-1, monitored.shape[-1])
        return {
            "loss": loss,
            "loss_terms": terms,
            "target_std": embeddings.float().std(dim=0).mean(),
            "target_embeddings": embeddings,
        }

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """EMA in place: ``target = momentum * target + (1 - momentum) * context``; no-op without a target encoder."""
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
