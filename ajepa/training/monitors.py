"""Collapse monitors for joint-embedding training.

A JEPA can collapse to a constant representation that the predictor matches trivially. Two cheap signals catch it:
the per-dimension standard deviation of target embeddings across the batch, and their effective rank
(the exponential of the entropy of the normalised singular values, Roy & Vetterli 2007).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch


def effective_rank(embeddings: torch.Tensor, max_rows: int = 4096) -> float:
    """Effective rank of ``embeddings`` (M, D), between 1 (collapsed) and min(M, D).

    Rows are centred first, so a constant offset shared by all embeddings does not count as a dimension.
    At most ``max_rows`` evenly spaced rows are used to keep the SVD cheap.
    """
    x = embeddings.detach().float()
    if x.shape[0] > max_rows:
        x = x[torch.linspace(0, x.shape[0] - 1, max_rows).long()]
    x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)
    total = s.sum()
    if total <= 1e-12:
        return 1.0
    p = s / total
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).item()


class CollapseError(RuntimeError):
    """Raised by :class:`CollapseGuard` when configured to abort a collapsed run."""


@dataclass
class CollapseGuard:
    """Warns (or aborts) when the effective rank stays at or below ``threshold`` for ``patience`` checks in a row.

    Attributes:
        threshold: effective rank considered collapsed (1.0 is a single direction).
        patience: consecutive collapsed observations before acting.
        abort: raise :class:`CollapseError` instead of warning.
    """

    threshold: float = 1.5
    patience: int = 20
    abort: bool = False
    _streak: int = field(default=0, init=False, repr=False)
    _warned: bool = field(default=False, init=False, repr=False)

    def update(self, rank: float, step: int) -> bool:
        """Record one observation; return True when the run is considered collapsed."""
        self._streak = self._streak + 1 if rank <= self.threshold else 0
        if self._streak < self.patience:
            return False
        message = (
            f"REPRESENTATION COLLAPSE: effective rank {rank:.2f} <= {self.threshold} for {self._streak} "
            f"consecutive checks (step {step}). Check the learning rate, EMA momentum and masking."
        )
        if self.abort:
            raise CollapseError(message)
        if not self._warned:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self._warned = True
        return True

    def state_dict(self) -> dict[str, int | bool]:
        """Streak state, so a resumed run keeps counting."""
        return {"streak": self._streak, "warned": self._warned}

    def load_state_dict(self, state: dict[str, int | bool]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._streak = int(state["streak"])
        self._warned = bool(state["warned"])
