"""The typed schema of a training run: one dataclass per Hydra config group of ``configs/``.

``python -m ajepa.train`` composes ``configs/`` with Hydra and :func:`run_config_from_dict` turns the result (a plain
dict) into a validated :class:`RunConfig`; the model, objective, masking and front-end sections reuse the config
classes of their own modules. Checkpoints store ``asdict(RunConfig)``, which :func:`run_config_from_dict` reads back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ajepa.data.dataset import SAMPLINGS
from ajepa.errors import ConfigError
from ajepa.features.audio import MAX_CLIP_SECONDS
from ajepa.features.logmel import FrontendConfig
from ajepa.inference.readout import check_pooling
from ajepa.masking import MaskingConfig
from ajepa.models import EncoderConfig, PredictorConfig
from ajepa.objectives import ObjectiveConfig
from ajepa.training.schedules import RAMPS
from ajepa.validation import check_fields, check_range

__all__ = [
    "CollapseConfig", "DataConfig", "ModelConfig", "OptimConfig", "ProbeConfig", "RunConfig", "TrainerConfig",
    "run_config_from_dict",
]

PRECISIONS = ("auto", "bf16", "fp32")
SOURCES = ("synthetic", "folder", "shards")

@dataclass
class DataConfig:
    """Where clips come from and how they are batched (``configs/data/*.yaml``)."""

    source: str = "synthetic"
    root: str | None = None
    synthetic_size: int = 2048
    clip_seconds: float = 1.0
    batch_size: int = 16
    num_workers: int = 1
    gain_db: tuple[float, float] | None = (-6.0, 6.0)
    random_crop: bool = True
    sampling: str = "file"
    drop_last: bool = True
    shuffle_buffer: int = 1000
    exclude: tuple[str, ...] = ()
    cache_mb: float = 0.0
    crops_per_item: int = 1

    def __post_init__(self) -> None:
        check_fields(self, "data")
        check_range("data.clip_seconds", self.clip_seconds, 0.01, MAX_CLIP_SECONDS)
        if self.root is not None and self.source == "synthetic":
            # The one-override promise: `data.root=...` alone means "train on these files".
            self.source = "folder"
        if self.source not in SOURCES:
            raise ConfigError(f"data.source must be one of {SOURCES}, got {self.source!r}")
        if self.source != "synthetic" and not self.root:
            what = "folder or manifest of audio files" if self.source == "folder" else "folder of tar shards"
            raise ConfigError(f"data={self.source} needs data.root=<{what}>")
        if self.batch_size < 1 or self.clip_seconds <= 0 or self.num_workers < 0 or self.synthetic_size < 1:
            raise ConfigError(f"invalid data config: batch_size={self.batch_size}, clip_seconds={self.clip_seconds}"
                              f", num_workers={self.num_workers}, synthetic_size={self.synthetic_size}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"data.sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.sampling == "duration" and self.source != "folder":
            raise ConfigError(f"data.sampling=duration needs the folder source (file durations), not {self.source!r}")
        if self.gain_db is not None:
            self.gain_db = (float(self.gain_db[0]), float(self.gain_db[1]))
        self.exclude = tuple(str(p) for p in (self.exclude or ()))
        if self.cache_mb < 0:
            raise ConfigError(f"data.cache_mb must be >= 0, got {self.cache_mb}")
        if self.cache_mb and self.source != "folder":
            raise ConfigError(f"data.cache_mb needs the folder source, not {self.source!r}")
        if isinstance(self.crops_per_item, bool) or not isinstance(self.crops_per_item, int) \
                or self.crops_per_item < 1:
            raise ConfigError(f"data.crops_per_item must be an int >= 1, got {self.crops_per_item!r}")
        if self.crops_per_item > 1 and self.source != "folder":
            raise ConfigError(f"data.crops_per_item needs the folder source, not {self.source!r}")
        if self.exclude and self.source != "folder":
            raise ConfigError(f"data.exclude needs the folder source (a folder or manifest), not {self.source!r}")


@dataclass
class OptimConfig:
    """AdamW and its per-step schedules (``configs/optim/adamw.yaml``)."""

    lr: float = 5e-4
    start_lr: float = 0.0
    min_lr: float = 1e-6
    warmup_steps: int | None = None
    warmup_fraction: float = 0.1
    weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    ema_momentum: float = 0.996
    final_ema_momentum: float = 1.0
    ema_schedule: str = "linear"
    ema_horizon: float | None = None
    fused: str | bool = "auto"

    def __post_init__(self) -> None:
        check_fields(self, "optim")
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        for name in ("start_lr", "min_lr", "weight_decay", "final_weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        if self.eps <= 0:
            raise ConfigError(f"optim.eps must be > 0, got {self.eps}")
        check_range("optim.ema_momentum", self.ema_momentum, 0.0, 1.0)
        check_range("optim.final_ema_momentum", self.final_ema_momentum, 0.0, 1.0)
        try:
            b1, b2 = (float(b) for b in self.betas)
        except (TypeError, ValueError):
            raise ConfigError(f"optim.betas must be two numbers, got {self.betas!r}") from None
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ConfigError(f"optim.betas must be in [0, 1), got {self.betas!r}")
        self.betas = (b1, b2)
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.fused not in ("auto", True, False):
            raise ConfigError(f"optim.fused must be auto, true or false, got {self.fused!r}")
        if self.ema_schedule not in RAMPS:
            raise ConfigError(f"optim.ema_schedule must be one of {sorted(RAMPS)}, got {self.ema_schedule!r}")
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ConfigError(f"optim.warmup_fraction must be in [0, 1], got {self.warmup_fraction}")
        if self.ema_horizon is not None and not 0.0 < float(self.ema_horizon) <= 1.0:
            raise ConfigError(f"optim.ema_horizon must be a fraction of the run in (0, 1], got {self.ema_horizon}")

    def start_momentum(self, max_steps: int) -> float:
        """The EMA momentum at step 0: ``ema_momentum``, or with ``ema_horizon`` the momentum whose averaging
        horizon ``1 / (1 - m)`` is that fraction of the run (0.16 of 1,600 steps is 0.996, the recipe's)."""
        if self.ema_horizon is None:
            return self.ema_momentum
        return 1.0 - 1.0 / max(1.0, self.ema_horizon * max_steps)

    def warmup(self, max_steps: int) -> int:
        """Warm-up length in steps."""
        if self.warmup_steps is not None:
            return int(self.warmup_steps)
        return int(round(self.warmup_fraction * max_steps))


@dataclass
class ProbeConfig:
    """``trainer.probe`` (``configs/trainer/default.yaml``); no ``manifest`` means no probe."""

    manifest: str | None = None
    every: int = 400
    max_clips: int = 400
    folds: int = 3
    pooling: str = "freqcat+std"
    average_layers: int | str = "all"

    def __post_init__(self) -> None:
        check_fields(self, "trainer.probe")
        if self.every < 1 or self.max_clips < 2 or self.folds < 2:
            raise ConfigError(f"trainer.probe needs every >= 1, max_clips >= 2 and folds >= 2, got {self.every}, "
                              f"{self.max_clips} and {self.folds}")
        try:
            check_pooling(self.pooling)
        except ValueError as e:
            raise ConfigError(f"trainer.probe.pooling: {e}") from None


@dataclass
class CollapseConfig:
    """Settings of :class:`ajepa.training.monitors.CollapseGuard`."""

    threshold: float = 1.5
    patience: int = 20
    abort: bool = False

    def __post_init__(self) -> None:
        check_fields(self, "trainer.collapse")


@dataclass
class TrainerConfig:
    """Loop length, cadences and execution switches (``configs/trainer/default.yaml``)."""

    max_steps: int = 300
    accumulate: int = 1
    log_every: int = 10
    checkpoint_every: int = 100
    keep_step_checkpoints: bool = False
    precision: str = "auto"
    compile: bool = False
    compile_backend: str = "inductor"
    cpu_threads: int | str = "auto"
    deterministic: bool = False
    progress: bool = True
    tensorboard: bool = True
    plots: bool = True
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    def __post_init__(self) -> None:
        check_fields(self, "trainer")
        if isinstance(self.collapse, Mapping):
            self.collapse = _build(CollapseConfig, "trainer.collapse", self.collapse)
        if isinstance(self.probe, Mapping):
            self.probe = _build(ProbeConfig, "trainer.probe", self.probe)
        if min(self.max_steps, self.accumulate, self.log_every, self.checkpoint_every) < 1:
            raise ConfigError("trainer.max_steps, accumulate, log_every and checkpoint_every must be >= 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass
class ModelConfig:
    """Encoder and predictor sizes (``configs/model/*.yaml``)."""

    name: str
    encoder: EncoderConfig
    predictor: PredictorConfig


@dataclass
class RunConfig:
    """Everything one training run needs, typed."""

    model: ModelConfig
    objective: ObjectiveConfig
    masking: MaskingConfig
    frontend: FrontendConfig
    data: DataConfig
    optim: OptimConfig
    trainer: TrainerConfig
    seed: int = 0
    device: str = "auto"
    resume: bool | str = False
    overwrite: bool = False


def _build(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    """``cls(**values)`` with a ConfigError that names the section for unknown or missing keys."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in config section {section!r}; known: {sorted(known)}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"config section {section!r}: {exc}") from None


def run_config_from_dict(cfg: Mapping[str, Any]) -> RunConfig:
    """Turn a composed config (a plain dict, e.g. ``OmegaConf.to_container(cfg, resolve=True)``) into a
    :class:`RunConfig`, validating every section. ``masking.curriculum_steps: null`` becomes the run's
    number of micro-batch steps (the collator's curriculum clock is the global batch index)."""
    missing = [k for k in ("model", "objective", "masking", "frontend", "data", "optim", "trainer") if k not in cfg]
    if missing:
        raise ConfigError(f"config is missing section(s) {missing}")
    trainer = _build(TrainerConfig, "trainer", cfg["trainer"])
    masking = dict(cfg["masking"])
    if masking.get("curriculum_steps") is None:
        masking["curriculum_steps"] = trainer.max_steps * trainer.accumulate
    model = cfg["model"]
    return RunConfig(
        model=ModelConfig(name=str(model.get("name", "custom")),
                          encoder=_build(EncoderConfig, "model.encoder", model["encoder"]),
                          predictor=_build(PredictorConfig, "model.predictor", model["predictor"])),
        objective=_build(ObjectiveConfig, "objective", cfg["objective"]),
        masking=_build(MaskingConfig, "masking", masking),
        frontend=_build(FrontendConfig, "frontend", cfg["frontend"]),
        data=_build(DataConfig, "data", cfg["data"]),
        optim=_build(OptimConfig, "optim", cfg["optim"]),
        trainer=trainer,
        seed=int(cfg.get("seed", 0)),
        device=str(cfg.get("device", "auto")),
        resume=cfg.get("resume", False),
        overwrite=_flag("overwrite", cfg.get("overwrite", False)),
    )


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value
