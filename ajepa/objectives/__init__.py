"""Training objectives, each its own module taking tensors and returning a loss (DINOv2's layout).

:class:`JEPAObjective` (the EMA target encoder's features), :class:`Data2VecObjective` (its instance-normalised top
blocks) and :class:`MAEObjective` (normalised patches), plus the optional anti-collapse addition
:class:`VarianceCovariance`, switched on by its weights. None of them imports a model: the training wrapper
(:mod:`ajepa.training.model`) runs the encoders and hands the objectives their hidden states.

A new objective is a module here with an :class:`~ajepa.objectives.base.ObjectiveBase` subclass, its name in
:data:`OBJECTIVES` and :data:`REGISTRY`, and a ``configs/objective/<name>.yaml``.
"""

from __future__ import annotations

from ajepa.objectives.base import ObjectiveBase
from ajepa.objectives.config import LOSSES, OBJECTIVES, ObjectiveConfig
from ajepa.objectives.data2vec import Data2VecObjective
from ajepa.objectives.jepa import JEPAObjective
from ajepa.objectives.losses import centre_per_position, instance_norm, normalize_patches, regression_loss
from ajepa.objectives.mae import MAEObjective
from ajepa.objectives.vicreg import VarianceCovariance, variance_covariance

REGISTRY: dict[str, type[ObjectiveBase]] = {"jepa": JEPAObjective, "mae": MAEObjective, "data2vec": Data2VecObjective}
assert set(REGISTRY) == set(OBJECTIVES), "every objective name needs its class"

__all__ = ["LOSSES", "OBJECTIVES", "REGISTRY", "Data2VecObjective", "JEPAObjective", "MAEObjective", "ObjectiveBase",
           "ObjectiveConfig", "VarianceCovariance", "build_objective", "build_regulariser", "centre_per_position",
           "instance_norm", "normalize_patches", "regression_loss", "variance_covariance"]


def build_objective(cfg: ObjectiveConfig) -> ObjectiveBase:
    """The objective module that ``cfg.name`` names."""
    return REGISTRY[cfg.name](cfg)


def build_regulariser(cfg: ObjectiveConfig) -> VarianceCovariance | None:
    """The VICReg terms when either weight is positive, else None."""
    if cfg.variance_weight > 0 or cfg.covariance_weight > 0:
        return VarianceCovariance(cfg.variance_weight, cfg.covariance_weight)
    return None
