"""The pre-training wrapper: a context encoder, an EMA target encoder and a predictor, trained by an objective."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ajepa.errors import ConfigError
from ajepa.masking.gather import apply_masks
from ajepa.models.predictor import Predictor
from ajepa.models.sizes import EncoderConfig, PredictorConfig
from ajepa.models.vit import ViTEncoder
from ajepa.objectives import ObjectiveConfig, build_objective, build_regulariser

__all__ = ["AudioJEPA"]


class AudioJEPA(nn.Module):
    """The pre-training model.

    ``forward(tokens (B, N, P), grid, context_idx (R, N_ctx), target_idx (R, K, N_tgt), token_valid (B, N) | None)
    -> dict`` with ``loss``, ``loss_terms`` (detached, unweighted: ``prediction`` and, with the VICReg terms,
    ``variance`` and ``covariance``), ``target_std`` and ``target_embeddings`` (detached ``(M, D)``).

    ``R = B * copies``: the context encoder may see several masked copies of each clip (rows ``i * copies ..``
    belong to clip ``i``) while the target encoder, an EMA copy of the context encoder that gradients never train
    and that is always in eval mode, runs once per clip on every token (data2vec 2.0's multi-mask). The objective
    (:mod:`ajepa.objectives`) turns the target encoder's hidden states, or the patches, into one target per token;
    this wrapper gathers each copy's target positions, and the predictor, with positional mask tokens, predicts
    them from the copy's context. mae has no target encoder (``target_encoder is None``, ``update_target`` is a
    no-op). With ``objective.teacher`` the target encoder is a frozen teacher (``frozen_teacher``; the training
    loop loads its weights, ``update_target`` is a no-op) and :attr:`learned_encoder` is the context encoder. The
    monitors describe the representation that could collapse: the targets for the latent objectives, the context
    features for mae and for a frozen teacher, whose targets cannot (``target_embeddings`` is then
    ``(R * N_ctx, D)``).
    """

    def __init__(self, encoder: EncoderConfig, predictor: PredictorConfig, objective: ObjectiveConfig) -> None:
        super().__init__()
        self.encoder_cfg, self.predictor_cfg, self.objective_cfg = encoder, predictor, objective
        self.objective = build_objective(objective)
        self.regulariser = build_regulariser(objective)
        self.context_encoder = ViTEncoder(encoder)
        self.target_encoder: ViTEncoder | None = None
        self.teacher_layers = self.objective.teacher_layers(encoder.depth)  # raises ConfigError when out of range
        if self.objective.uses_target_encoder:
            self.target_encoder = copy.deepcopy(self.context_encoder).requires_grad_(False).eval()
        self.frozen_teacher = objective.teacher is not None
        self.predictor = Predictor(encoder.embed_dim, predictor,
                                   self.objective.output_dim(encoder.embed_dim, encoder.patch_dim))

    @property
    def learned_encoder(self) -> ViTEncoder:
        """The encoder this training delivers: the EMA target encoder, or the context encoder where there is no
        target encoder (mae) or where it is a frozen teacher."""
        if self.target_encoder is None or self.frozen_teacher:
            return self.context_encoder
        return self.target_encoder

    def train(self, mode: bool = True) -> AudioJEPA:
        super().train(mode)
        if self.target_encoder is not None:
            self.target_encoder.eval()  # no drop-path on targets, whatever the mode of the rest
        return self

    @torch.no_grad()
    def targets(self, tokens: Tensor, grid: tuple[int, int], token_valid: Tensor | None) -> Tensor:
        """The objective's target for every token of every clip, ``(B, N, D|P)``: one target-encoder pass."""
        teacher = None
        if self.target_encoder is not None:
            teacher = self.target_encoder.forward_intermediates(tokens, grid, self.teacher_layers,
                                                                norm=self.objective.teacher_norm)
        return self.objective.target_tokens(tokens, teacher, token_valid)

    def forward(self, tokens: Tensor, grid: tuple[int, int], context_idx: Tensor,
                target_idx: Tensor, token_valid: Tensor | None = None) -> dict[str, Tensor]:
        """``token_valid`` (B, N) bool marks tokens that hold audio (not zero-padding); targets outside it do not
        count in the loss, so a model is never trained to predict the padding of short clips."""
        b = tokens.shape[0]
        if context_idx.dim() != 2 or target_idx.dim() != 3 or context_idx.shape[0] != target_idx.shape[0] \
                or context_idx.shape[0] % b:
            raise ConfigError(f"expected context_idx (B * copies, N_ctx) and target_idx (B * copies, K, N_tgt) for "
                              f"B={b}, got {tuple(context_idx.shape)} and {tuple(target_idx.shape)}")
        copies = context_idx.shape[0] // b
        per_token = self.targets(tokens, grid, token_valid)
        if copies > 1:  # each clip's copies read the one teacher pass
            tokens = tokens.repeat_interleave(copies, dim=0)
            per_token = per_token.repeat_interleave(copies, dim=0)
            token_valid = None if token_valid is None else token_valid.repeat_interleave(copies, dim=0)
        targets = apply_masks(per_token, target_idx)  # (R, K, N_tgt, D|P)
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
        """EMA in place: ``target = momentum * target + (1 - momentum) * context``; no-op without a target encoder
        or with a frozen teacher."""
        if self.target_encoder is None or self.frozen_teacher:
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
