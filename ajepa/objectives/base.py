"""What every objective module shares: its config, no parameters of its own, and tensors in, a loss out."""

from __future__ import annotations

from torch import Tensor, nn

from ajepa.errors import ConfigError
from ajepa.objectives.config import ObjectiveConfig


class ObjectiveBase(nn.Module):
    """An objective turns tensors into a loss; it knows no model.

    The training wrapper (:class:`ajepa.training.model.AudioJEPA`) runs the target encoder when
    ``uses_target_encoder`` is true, asking it for the hidden states :meth:`teacher_layers` names (normalised when
    ``teacher_norm``), and hands them to :meth:`target_tokens`, which returns one target per token of each clip.
    The wrapper gathers the masked positions of each masked copy from those, runs the predictor to
    :meth:`output_dim` values per target and calls ``forward(pred, targets, weight)`` for the loss;
    :meth:`monitored` says which representation the collapse monitors watch.
    """

    uses_target_encoder: bool = False
    teacher_norm: bool = True

    def __init__(self, cfg: ObjectiveConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def teacher_layers(self, depth: int) -> list[int]:
        """The target encoder's hidden states (``0..depth``, ascending) that :meth:`target_tokens` needs."""
        return []

    def output_dim(self, embed_dim: int, patch_dim: int) -> int:
        """Values the predictor regresses per target token."""
        raise NotImplementedError

    def target_tokens(self, tokens: Tensor, teacher: list[Tensor] | None, valid: Tensor | None) -> Tensor:
        """``tokens (B, N, P)``, the teacher's hidden states (each ``(B, N, D)``) or None, ``valid (B, N)`` bool or
        None -> the target of every token ``(B, N, out)``; called under ``no_grad``."""
        raise NotImplementedError

    def monitored(self, targets: Tensor, context: Tensor) -> Tensor:
        """What the collapse monitors watch: the gathered targets ``(R, K, N_tgt, D)``, or the context ``(R, N_ctx, D)``
        where the targets come from a frozen teacher (``cfg.teacher``) and cannot collapse while the student can."""
        return context if self.cfg.teacher is not None else targets


def top_layers(count: int | None, depth: int, first: int = 0) -> list[int]:
    """The last ``count`` hidden states of an encoder of ``depth`` blocks, from ``first..depth`` (``None``: all)."""
    available = depth + 1 - first
    count = available if count is None else count
    if not 1 <= count <= available:
        raise ConfigError(f"objective.target_layers={count} exceeds the encoder's {available} hidden states "
                          f"(depth {depth}{' + the embedding' if first == 0 else ''})")
    return list(range(depth + 1 - count, depth + 1))
