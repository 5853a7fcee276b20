"""The objective's configuration (``configs/objective/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from ajepa.errors import ConfigError

OBJECTIVES = ("jepa", "mae")
LOSSES = ("smooth_l1", "l2", "l1")


@dataclass
class ObjectiveConfig:
    """What the predictor regresses, and the optional anti-collapse term.

    ``name``: ``jepa`` (the EMA target encoder's features of the target blocks) or ``mae`` (the blocks' per-patch
    normalised log-mel patches, mean squared error; no target encoder). ``loss``, ``target_layernorm`` and
    ``target_layers`` belong to jepa: ``None`` takes jepa's default (smooth-L1, layer-normed targets, the final
    block's output), and setting one for mae is an error rather than a silently ignored key. ``target_layers``:
    the targets are the mean of the target encoder's last ``target_layers`` hidden states (each normalised; 1 is
    I-JEPA's final output, more is data2vec's choice).

    ``variance_weight`` / ``covariance_weight``: VICReg terms on the context encoder's output tokens, for either
    objective (:class:`ajepa.objectives.VarianceCovariance`); 0 and 0 leave them out. ``ignore_padding``: targets
    in zero-padded time columns of short clips are left out of the loss, and padded context tokens out of the
    VICReg terms.
    """

    name: str = "jepa"
    loss: str | None = None
    target_layernorm: bool | None = None
    target_layers: int | None = None
    variance_weight: float = 0.0
    covariance_weight: float = 0.0
    ignore_padding: bool = True

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.name!r}; choose one of {OBJECTIVES}")
        jepa_only = {k: v for k, v in (("loss", self.loss), ("target_layernorm", self.target_layernorm),
                                       ("target_layers", self.target_layers)) if v is not None}
        if self.name == "mae" and jepa_only:
            raise ConfigError(f"objective.{', objective.'.join(jepa_only)} appl{'ies' if len(jepa_only) == 1 else 'y'}"
                              " to jepa only: mae regresses normalised patches with the squared error")
        if self.name == "jepa":
            self.loss = "smooth_l1" if self.loss is None else self.loss
            self.target_layernorm = True if self.target_layernorm is None else bool(self.target_layernorm)
            self.target_layers = 1 if self.target_layers is None else int(self.target_layers)
            if self.loss not in LOSSES:
                raise ConfigError(f"unknown loss {self.loss!r}; choose one of {LOSSES}")
            if self.target_layers < 1:
                raise ConfigError(f"target_layers must be >= 1, got {self.target_layers}")
        if min(self.variance_weight, self.covariance_weight) < 0:
            raise ConfigError("variance_weight and covariance_weight must be >= 0")
