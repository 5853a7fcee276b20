"""What every probe shares: its result type, its interface, feature checks and train-split standardisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

__all__ = ["ProbeResult", "Probe", "Standardizer", "check_features", "accuracy"]


@dataclass
class ProbeResult:
    """Outcome of one probe on one train/test split."""

    accuracy: float
    predictions: np.ndarray  # (N_test,) int64
    info: dict = field(default_factory=dict)  # e.g. best epoch, validation accuracy


class Probe(Protocol):
    """A classifier fitted on training embeddings and evaluated on test embeddings."""

    name: str

    def fit_predict(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        *,
        seed: int,
        val: tuple[np.ndarray, np.ndarray] | None = None,
        groups: np.ndarray | None = None,
    ) -> ProbeResult:
        """Train on ``(x_train, y_train)`` and return accuracy and predictions on ``x_test``.

        ``val`` is an explicit validation set (e.g. an official validation list); without it, probes
        that need one carve it from the training data. ``groups`` (N_train,) are the training clips'
        groups (speakers, source recordings), for probes that cross-validate inside the training part.
        """
        ...


def check_features(x: np.ndarray, y: np.ndarray | None = None, what: str = "features") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what} must be (N, D) pooled embeddings, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contain NaN or inf values")
    if y is not None and len(y) != len(x):
        raise ValueError(f"{what}: {len(x)} rows but {len(y)} labels")
    return x.astype(np.float32, copy=False)


class Standardizer:
    """Per-dimension z-scoring with statistics of the data it was fitted on (the training split)."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> "Standardizer":
        """Compute mean and std of ``x`` (N, D); constant dimensions get std 1 so they stay finite."""
        x = np.asarray(x, dtype=np.float64)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std < self.eps, 1.0, std)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the fitted statistics to ``x`` (N, D)."""
        if self.mean is None or self.std is None:
            raise RuntimeError("Standardizer.transform called before fit")
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.std).astype(np.float32)


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``pred`` equal to ``y``; NaN for an empty test set."""
    y = np.asarray(y)
    return float((pred == y).mean()) if len(y) else float("nan")
