"""Training objectives, each its own module: what the predictor regresses and the loss (DINOv2's layout).

:class:`JEPAObjective` (the EMA target encoder's features) and :class:`MAEObjective` (normalised patches), plus
the optional anti-collapse addition :class:`VarianceCovariance`, switched on by its weights.
"""

from __future__ import annotations

from ajepa.objectives.config import LOSSES, OBJECTIVES, ObjectiveConfig
from ajepa.objectives.jepa import JEPAObjective
from ajepa.objectives.losses import normalize_patches, regression_loss
from ajepa.objectives.mae import MAEObjective
from ajepa.objectives.vicreg import VarianceCovariance, variance_covariance

Objective = JEPAObjective | MAEObjective

__all__ = ["LOSSES", "OBJECTIVES", "JEPAObjective", "MAEObjective", "Objective", "ObjectiveConfig",
           "VarianceCovariance", "build_objective", "build_regulariser", "normalize_patches", "regression_loss",
           "variance_covariance"]


def build_objective(cfg: ObjectiveConfig) -> Objective:
    """The objective module that ``cfg.name`` names."""
    return {"jepa": JEPAObjective, "mae": MAEObjective}[cfg.name](cfg)


def build_regulariser(cfg: ObjectiveConfig) -> VarianceCovariance | None:
    """The VICReg terms when either weight is positive, else None."""
    if cfg.variance_weight > 0 or cfg.covariance_weight > 0:
        return VarianceCovariance(cfg.variance_weight, cfg.covariance_weight)
    return None
