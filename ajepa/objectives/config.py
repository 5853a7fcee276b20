"""The objective's configuration (``configs/objective/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from ajepa.errors import ConfigError
from ajepa.validation import check_fields

# The one list of objective names (the registry in ajepa.objectives and evals.loco read it).
OBJECTIVES = ("jepa", "mae", "data2vec")
LOSSES = ("smooth_l1", "l2", "l1")
# The defaults of the keys that belong to the latent objectives, per objective.
_LATENT_DEFAULTS = {"jepa": {"loss": "smooth_l1", "target_layernorm": True, "target_layers": 1},
                    "data2vec": {"loss": "l2", "target_layernorm": False, "target_layers": None}}


@dataclass
class ObjectiveConfig:
    """What the predictor regresses, and the optional anti-collapse term.

    ``name``: ``jepa`` (I-JEPA: the EMA target encoder's layer-normed features of the target blocks), ``data2vec``
    (data2vec 2.0 / EAT: the instance-normalised mean of the target encoder's top blocks, squared error) or ``mae``
    (the blocks' per-patch normalised log-mel patches, mean squared error; no target encoder). ``loss``,
    ``target_layernorm``, ``target_layers`` and ``position_centring`` belong to the latent objectives (jepa,
    data2vec): ``None`` takes the objective's default, and setting one for mae is an error rather than a silently
    ignored key. ``target_layers``: how many of the target encoder's last hidden states are averaged into a target
    (jepa: 1, I-JEPA's final output; data2vec: ``None``, every block). ``position_centring``: subtract each
    position's batch mean from the targets, so that what the position alone predicts is not rewarded.
    ``teacher``: a model file (training checkpoint or export) whose encoder becomes a frozen target encoder (SALT,
    arXiv 2509.24317): no EMA, the context encoder learns from scratch to predict it, and the run's result is the
    context encoder.

    ``variance_weight`` / ``covariance_weight``: VICReg terms on the context encoder's output tokens, for any
    objective (:class:`ajepa.objectives.VarianceCovariance`); 0 and 0 leave them out. ``ignore_padding``: targets
    in zero-padded time columns of short clips are left out of the loss, and padded context tokens out of the
    VICReg terms.
    """

    name: str = "jepa"
    loss: str | None = None
    target_layernorm: bool | None = None
    target_layers: int | None = None
    position_centring: bool | None = None
    teacher: str | None = None
    variance_weight: float = 0.0
    covariance_weight: float = 0.0
    ignore_padding: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "objective")
        if self.name not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.name!r}; choose one of {OBJECTIVES}")
        latent_only = {k: v for k, v in (("loss", self.loss), ("target_layernorm", self.target_layernorm),
                                         ("target_layers", self.target_layers),
                                         ("position_centring", self.position_centring),
                                         ("teacher", self.teacher)) if v is not None}
        if self.teacher is not None and not self.teacher.strip():
            raise ConfigError("objective.teacher must name a model file (a checkpoint or an export), or be null")
        if self.name == "mae" and latent_only:
            raise ConfigError(f"objective.{', objective.'.join(latent_only)} appl"
                              f"{'ies' if len(latent_only) == 1 else 'y'} to jepa and data2vec only: mae regresses "
                              "normalised patches with the squared error")
        if self.name in _LATENT_DEFAULTS:
            defaults = _LATENT_DEFAULTS[self.name]
            self.loss = defaults["loss"] if self.loss is None else self.loss
            self.target_layernorm = (defaults["target_layernorm"] if self.target_layernorm is None
                                     else bool(self.target_layernorm))
            self.position_centring = bool(self.position_centring)
            if self.target_layers is None:
                self.target_layers = defaults["target_layers"]
            elif isinstance(self.target_layers, bool) or int(self.target_layers) != self.target_layers:
                raise ConfigError(f"objective.target_layers must be an int, got {self.target_layers!r}")
            if self.target_layers is not None:
                self.target_layers = int(self.target_layers)
                if self.target_layers < 1:
                    raise ConfigError(f"target_layers must be >= 1, got {self.target_layers}")
            if self.loss not in LOSSES:
                raise ConfigError(f"unknown loss {self.loss!r}; choose one of {LOSSES}")
        if min(self.variance_weight, self.covariance_weight) < 0:
            raise ConfigError("variance_weight and covariance_weight must be >= 0")
