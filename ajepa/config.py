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
from ajepa.features.logmel import FrontendConfig
from ajepa.masking import MaskingConfig
from ajepa.models import EncoderConfig, PredictorConfig
from ajepa.objectives import ObjectiveConfig
from ajepa.schedules import RAMPS
from ajepa.transfer_probe import ProbeConfig

__all__ = [
    "CollapseConfig", "DataConfig", "ModelConfig", "OptimConfig", "RunConfig", "TrainerConfig",
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

    def __post_init__(self) -> None:
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
    fused: str | bool = "auto"

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.fused not in ("auto", True, False):
            raise ConfigError(f"optim.fused must be auto, true or false, got {self.fused!r}")
        if self.ema_schedule not in RAMPS:
            raise ConfigError(f"optim.ema_schedule must be one of {sorted(RAMPS)}, got {self.ema_schedule!r}")
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ConfigError(f"optim.warmup_fraction must be in [0, 1], got {self.warmup_fraction}")

    def warmup(self, max_steps: int) -> int:
        """Warm-up length in steps."""
        if self.warmup_steps is not None:
            return int(self.warmup_steps)
        return int(round(self.warmup_fraction * max_steps))


@dataclass
class CollapseConfig:
    """Settings of :class:`ajepa.monitors.CollapseGuard`."""

    threshold: float = 1.5
    patience: int = 20
    abort: bool = False


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
    )
