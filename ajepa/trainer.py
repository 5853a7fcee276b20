"""The Audio-JEPA pre-training loop, in small pieces.

:func:`train` wires them together: build the front end, model, optimiser and data, restore a checkpoint,
then repeat :func:`train_step` and write metrics and checkpoints. It knows nothing about Hydra: it takes a
typed :class:`RunConfig` (``run_config_from_dict`` turns the composed Hydra config into one).

Reproducibility: every random stream is a pure function of ``seed`` and a position, never of process
history. Model init uses ``seed`` in a forked RNG scope; crops and gains use ``(seed, index, batch_index)``
(dataset); epoch order ``(seed, epoch)`` (sampler); masks ``(seed, batch_index)`` (collator); whatever the
model draws from the global torch RNG (drop-path) follows a re-seed from ``(seed, rank, step)`` at every step,
inside a forked RNG scope so the caller's RNG state is left alone. A checkpoint therefore needs only the step
(and the data position derived from it) to continue bit-for-bit on the same hardware, and nothing depends on
``num_workers``.

Batch arithmetic: a "micro-batch" is ``data.batch_size`` clips on one rank; the sampler's global batch
index advances by one per micro-batch step of all ranks together; one optimiser step consumes
``trainer.accumulate`` of them, i.e. ``data.batch_size * world_size * trainer.accumulate`` clips.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ajepa import distributed as D
from ajepa.checkpoint import load_checkpoint, save_checkpoint
from ajepa.data import AudioClipDataset, BatchIndexSampler, SyntheticAudioDataset, collate_clips, make_loader
from ajepa.data.streaming import ShardedAudioStream, assign_batch_index
from ajepa.errors import CheckpointError, ConfigError
from ajepa.features.logmel import FrontendConfig, LogMelFrontend
from ajepa.features.patches import grid_shape, patchify
from ajepa.masking import MaskCollator, MaskingConfig
from ajepa.models import AudioJEPA, EncoderConfig, ObjectiveConfig, PredictorConfig
from ajepa.monitors import CollapseError, CollapseGuard, effective_rank
from ajepa.schedules import linear_schedule, warmup_cosine

logger = logging.getLogger(__name__)

__all__ = [
    "CollapseConfig", "DataConfig", "ModelConfig", "OptimConfig", "RunConfig", "TrainerConfig",
    "DataPosition", "RunPaths", "ShardedMaskCollate", "StepHyper", "TrainResult", "TrainState",
    "run_config_from_dict", "build_model", "build_frontend", "clip_grid", "build_dataset", "build_loader",
    "build_optimizer", "hyperparams_at", "train_step", "checkpoint_state", "restore_checkpoint",
    "resolve_resume", "train", "warn_config_drift",
]

PRECISIONS = ("auto", "bf16", "fp32")
SOURCES = ("synthetic", "folder", "shards")


# --------------------------------------------------------------------------------------------- config


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
    drop_last: bool = True
    shuffle_buffer: int = 1000

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
        if self.gain_db is not None:
            self.gain_db = (float(self.gain_db[0]), float(self.gain_db[1]))


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
    fused: str | bool = "auto"

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.fused not in ("auto", True, False):
            raise ConfigError(f"optim.fused must be auto, true or false, got {self.fused!r}")
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

    def __post_init__(self) -> None:
        if isinstance(self.collapse, Mapping):
            self.collapse = _build(CollapseConfig, "trainer.collapse", self.collapse)
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


# ------------------------------------------------------------------------------------------ building


def build_model(cfg: RunConfig, device: torch.device) -> AudioJEPA:
    """The AudioJEPA, initialised on the CPU from ``cfg.seed`` alone (same weights on every rank and device)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = AudioJEPA(cfg.model.encoder, cfg.model.predictor, cfg.objective)
    return model.to(device)


def build_frontend(cfg: FrontendConfig, device: torch.device) -> LogMelFrontend:
    """The normalised log-mel front end, on ``device`` (it runs batched in the training process)."""
    return LogMelFrontend(cfg).to(device)


def clip_grid(frontend: LogMelFrontend, clip_seconds: float, patch: tuple[int, int]) -> tuple[int, int]:
    """The ``(F_p, T_p)`` patch grid of one training clip."""
    samples = int(round(clip_seconds * frontend.cfg.sample_rate))
    return grid_shape(frontend.cfg.n_mels, frontend.num_frames(samples), patch)


def build_dataset(data: DataConfig, sample_rate: int, seed: int, info: D.DistInfo = D.DistInfo()
                  ) -> torch.utils.data.Dataset:
    """Synthetic corpus, audio files (map-style) or tar shards (a rank-sharded stream), yielding sample dicts."""
    if data.source == "synthetic":
        return SyntheticAudioDataset(data.synthetic_size, data.clip_seconds, seed, sample_rate)
    if data.source == "shards":
        return ShardedAudioStream(data.root, data.clip_seconds, sample_rate=sample_rate, seed=seed,
                                  batch_size=data.batch_size, shuffle_buffer=data.shuffle_buffer, rank=info.rank,
                                  world_size=info.world_size, gain_db=data.gain_db, random_crop=data.random_crop)
    return AudioClipDataset(data.root, data.clip_seconds, sample_rate=sample_rate, seed=seed,
                            gain_db=data.gain_db, random_crop=data.random_crop)


class ShardedMaskCollate:
    """Collate one rank's samples and attach that rank's rows of the *global* batch's masks.

    The masker draws per-batch shapes and cuts the context to the batch minimum, so masks depend on the batch
    size. Drawing them for all ``batch_size * world_size`` clips of the global batch and slicing makes a
    W-process run see exactly the masks of a 1-process run with W times the batch. The output also keeps
    ``"skipped"`` (unreadable files), which the trainer reports.
    """

    def __init__(self, collator: MaskCollator, rank: int = 0, world_size: int = 1) -> None:
        self.collator, self.rank, self.world_size = collator, rank, world_size

    def __call__(self, samples: list[dict]) -> dict:
        batch = collate_clips(samples)
        b = len(samples)
        masks = self.collator.masks(b * self.world_size, batch["batch_index"])
        rows = slice(self.rank * b, (self.rank + 1) * b)
        batch["context_idx"] = masks.context_idx[rows].contiguous()
        batch["target_idx"] = masks.target_idx[rows].contiguous()
        return batch


def _single_threaded(worker_id: int) -> None:
    # Decoding workers must not compete with the training process for the few cores with BLAS threads.
    torch.set_num_threads(1)


class DataPosition:
    """Maps the global batch index (micro-batches since the start) to ``(epoch, batch_in_epoch)``."""

    def __init__(self, batches_per_epoch: int) -> None:
        self.batches_per_epoch = max(1, batches_per_epoch)

    def position(self, global_batch_index: int) -> tuple[int, int]:
        return divmod(global_batch_index, self.batches_per_epoch)


def build_loader(cfg: RunConfig, dataset: torch.utils.data.Dataset, grid: tuple[int, int], info: D.DistInfo,
                 start_batch: int) -> tuple[torch.utils.data.DataLoader, DataPosition]:
    """An endless, rank-sharded loader that starts at global batch ``start_batch`` (exact resume).

    Map-style datasets go through :class:`BatchIndexSampler`; a :class:`ShardedAudioStream` numbers its own
    batches and is fast-forwarded to ``start_batch`` (its position follows from the batch count alone).
    """
    collate = ShardedMaskCollate(MaskCollator(cfg.masking, grid, cfg.seed), info.rank, info.world_size)
    workers = cfg.data.num_workers
    if isinstance(dataset, ShardedAudioStream):
        if start_batch:
            dataset.load_state_dict(dataset.state_at(start_batch, workers))
        extra = {"persistent_workers": True, "worker_init_fn": _single_threaded} if workers else {}
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=cfg.data.batch_size, collate_fn=assign_batch_index(collate, cfg.data.batch_size),
            num_workers=workers, pin_memory=torch.cuda.is_available(), **extra)
        return loader, DataPosition(dataset.batches_per_epoch(workers))
    sampler = BatchIndexSampler(len(dataset), cfg.data.batch_size, cfg.seed, drop_last=cfg.data.drop_last,
                                rank=info.rank, world_size=info.world_size, start_batch=start_batch)
    return make_loader(dataset, sampler, collate, workers), DataPosition(sampler.batches_per_epoch)


def build_optimizer(model: AudioJEPA, optim: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, decay and no-decay groups; fused kernels on CUDA by default."""
    fused = device.type == "cuda" if optim.fused == "auto" else bool(optim.fused)
    return torch.optim.AdamW(model.param_groups(optim.weight_decay), lr=optim.start_lr, betas=optim.betas,
                             eps=optim.eps, fused=fused or None)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA for ``auto`` (on CPU bf16 matmuls are slower than fp32); None means fp32."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def maybe_compile(module: nn.Module, enabled: bool, backend: str = "inductor") -> nn.Module:
    """``torch.compile(module, backend=backend)`` when enabled.

    The context and target sizes change with every batch's masks, so the graph is compiled with dynamic shapes
    from the start: one compilation instead of a static one that is thrown away at the second batch.
    """
    return torch.compile(module, backend=backend, dynamic=True) if enabled else module


# ----------------------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class StepHyper:
    """The scheduled hyper-parameters of one optimiser step."""

    lr: float
    weight_decay: float
    momentum: float


def hyperparams_at(step: int, optim: OptimConfig, max_steps: int) -> StepHyper:
    """Learning rate (warm-up + cosine), weight decay and EMA momentum (linear) for 0-based ``step``."""
    return StepHyper(
        lr=warmup_cosine(step, max_steps, optim.warmup(max_steps), optim.lr, optim.min_lr, optim.start_lr),
        weight_decay=linear_schedule(step, max_steps, optim.weight_decay, optim.final_weight_decay),
        momentum=linear_schedule(step, max_steps, optim.ema_momentum, optim.final_ema_momentum),
    )


def apply_hyperparams(optimizer: torch.optim.Optimizer, hp: StepHyper) -> None:
    """Set this step's lr on every group and its weight decay on the decay group (norms and biases keep 0)."""
    for group in optimizer.param_groups:
        group["lr"] = hp.lr
        if group.get("name") == "decay":
            group["weight_decay"] = hp.weight_decay


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the global torch RNG during ``step`` on ``rank`` (drop-path and any other in-model sampling)."""
    return int(np.random.SeedSequence([seed, rank, step, 0x5EED]).generate_state(1, np.uint64)[0] >> 1)


# ------------------------------------------------------------------------------------------ the step


@dataclass
class TrainState:
    """What the loop mutates. ``model`` is the bare AudioJEPA (checkpoints, EMA); ``ddp`` the DDP wrapper or
    the model itself; ``forward`` what the loss is computed with (``ddp``, possibly compiled)."""

    model: AudioJEPA
    ddp: nn.Module
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0


@dataclass
class StepOutput:
    """Device tensors of one optimiser step; read them (a GPU sync) only when logging."""

    loss: Tensor
    target_std: Tensor
    grad_norm: Tensor
    embeddings: Tensor
    sample: dict[str, Any]


def featurize(frontend: LogMelFrontend, wav: Tensor, patch: tuple[int, int]) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """Waveforms ``(B, N)`` -> log-mel ``(B, F, T)`` and patch tokens ``(B, F_p * T_p, pf * pt)`` with the grid.

    Always fp32: a log of bf16 energies would lose most of the dynamic range.
    """
    with torch.autocast(wav.device.type, enabled=False):
        spec = frontend(wav.float())
    tokens, grid = patchify(spec, patch)
    return spec, tokens, grid


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a collated batch to ``device`` (asynchronously from pinned memory)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def train_step(state: TrainState, micro_batches: list[dict], hp: StepHyper, frontend: LogMelFrontend,
               amp_dtype: torch.dtype | None, grad_clip: float) -> StepOutput:
    """One optimiser step over ``len(micro_batches)`` accumulated micro-batches, then the EMA update.

    Gradients are all-reduced (DDP) only on the last micro-batch. The loss of each micro-batch is scaled by
    ``1 / accumulate`` so the update equals that of one batch ``accumulate`` times larger.
    """
    apply_hyperparams(state.optimizer, hp)
    patch = state.model.encoder_cfg.patch
    scale = 1.0 / len(micro_batches)
    losses, stds = [], []
    for i, batch in enumerate(micro_batches):
        spec, tokens, grid = featurize(frontend, batch["wav"], patch)
        is_last = i == len(micro_batches) - 1
        no_sync = getattr(state.ddp, "no_sync", None)
        sync_ctx = no_sync() if (no_sync is not None and not is_last) else contextlib.nullcontext()
        amp = torch.autocast(tokens.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with sync_ctx:
            with amp:
                out = state.forward(tokens, grid, batch["context_idx"], batch["target_idx"])
            (out["loss"] * scale).backward()
        losses.append(out["loss"].detach())
        stds.append(out["target_std"].detach())
    params = [p for p in state.model.parameters() if p.requires_grad]
    # An infinite bound measures the norm without clipping.
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.model.update_target(hp.momentum)
    state.step += 1
    sample = {"spec": spec[0], "grid": grid, "context_idx": batch["context_idx"][0],
              "target_idx": batch["target_idx"][0]}
    return StepOutput(loss=torch.stack(losses).mean(), target_std=torch.stack(stds).mean(),
                      grad_norm=grad_norm.detach(), embeddings=out["target_embeddings"], sample=sample)


def step_metrics(out: StepOutput, info: D.DistInfo) -> dict[str, float]:
    """Loss, target std, gradient norm and effective rank, averaged over ranks (a collective: all ranks call it)."""
    rank = effective_rank(out.embeddings)
    values = torch.stack([out.loss.float(), out.target_std.float(), out.grad_norm.float(),
                          torch.tensor(rank, device=out.loss.device)])
    loss, std, grad_norm, rank = D.all_reduce_mean(values, info).tolist()
    return {"loss": loss, "target_std": std, "effective_rank": rank, "grad_norm": grad_norm}


# ---------------------------------------------------------------------------------------- run outputs


@dataclass(frozen=True)
class RunPaths:
    """The files of a run directory (docs/CONTRACTS.md, "Run directory")."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def plots(self) -> Path:
        return self.root / "plots"


class MetricsLogger:
    """Per-step records to ``metrics.jsonl``, TensorBoard and the console (rank 0 only).

    On resume, records past ``start_step`` (written after the checkpoint by the interrupted run) are dropped
    from the jsonl and TensorBoard purges them too, so the curves have no duplicated steps.
    """

    def __init__(self, paths: RunPaths, start_step: int, tensorboard: bool) -> None:
        self.paths = paths
        paths.root.mkdir(parents=True, exist_ok=True)
        kept = _read_jsonl(paths.metrics, max_step=start_step) if start_step > 0 else []
        with open(paths.metrics, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        self.records: list[dict] = kept
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import; only when asked for

            self.writer = SummaryWriter(str(paths.tensorboard), purge_step=start_step + 1 if start_step else None)

    def log(self, record: dict) -> None:
        """Append one record (must hold ``step``)."""
        self.records.append(record)
        with open(self.paths.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _read_jsonl(path: Path, max_step: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r.get("step", 0) <= max_step]


def format_record(record: dict, max_steps: int) -> str:
    """One console line for a metrics record."""
    return (f"step {record['step']}/{max_steps} | loss {record['loss']:.4f} | lr {record['lr']:.2e} | "
            f"wd {record['wd']:.3f} | ema {record['momentum']:.4f} | std {record['target_std']:.3f} | "
            f"rank {record['effective_rank']:.1f} | {record['clips_per_s']:.1f} clips/s")


# --------------------------------------------------------------------------------------- checkpoints


def checkpoint_state(state: TrainState, cfg: RunConfig, info: D.DistInfo, data_position: DataPosition,
                     guard: CollapseGuard) -> dict[str, Any]:
    """The checkpoint dict of docs/CONTRACTS.md (tensors and plain values only).

    ``config`` is the effective run config (``asdict(cfg)``: defaults filled in, ``data.root`` absolute and
    the source it implies), which :func:`run_config_from_dict` reads back.
    """
    global_batch_index = state.step * cfg.trainer.accumulate
    epoch, batch_in_epoch = data_position.position(global_batch_index)
    return {
        "step": state.step,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        # All randomness is a pure function of (seed, position); see the module docstring.
        "rng": {"seed": cfg.seed, "scheme": "per-position (seed, batch_index) / (seed, rank, step)"},
        "data": {"epoch": epoch, "batch_in_epoch": batch_in_epoch, "global_batch_index": global_batch_index,
                 "batch_size": cfg.data.batch_size, "world_size": info.world_size,
                 "accumulate": cfg.trainer.accumulate},
        "collapse_guard": guard.state_dict(),
        "config": asdict(cfg),
        "frontend": asdict(cfg.frontend),
        "encoder": asdict(cfg.model.encoder),
        "clip_seconds": float(cfg.data.clip_seconds),
    }


def save_training_checkpoint(paths: RunPaths, ckpt: dict[str, Any], keep_step: bool) -> Path:
    """Write ``last.pt`` atomically (and ``step_XXXXXX.pt`` when asked)."""
    path = save_checkpoint(paths.last_checkpoint, ckpt)
    if keep_step:
        save_checkpoint(paths.checkpoints / f"step_{ckpt['step']:06d}.pt", ckpt)
    return path


def resolve_resume(resume: bool | str | None, paths: RunPaths) -> Path | None:
    """The checkpoint to resume from, or None to start fresh.

    ``true``: this run directory's ``checkpoints/last.pt`` (error if absent: a new Hydra run directory was
    probably created; pass ``hydra.run.dir``). ``auto``: that file if it exists, else start fresh (for
    requeued jobs). A path: a checkpoint file, or a run directory holding ``checkpoints/last.pt``.
    """
    if resume in (None, False, "false", ""):
        return None
    if resume in (True, "true", "auto"):
        if paths.last_checkpoint.is_file():
            return paths.last_checkpoint
        if resume == "auto":
            return None
        raise ConfigError(
            f"resume=true but {paths.last_checkpoint} does not exist. Point at the run to continue: "
            f"`hydra.run.dir=<run folder> resume=true`, or `resume=<run folder or .pt file>`; "
            f"`resume=auto` starts fresh when there is nothing to resume.")
    path = Path(str(resume))
    if path.is_dir():
        path = RunPaths(path).last_checkpoint
    if not path.is_file():
        raise ConfigError(f"resume={resume!r}: no checkpoint at {path}")
    return path


def restore_checkpoint(path: Path, state: TrainState, cfg: RunConfig, info: D.DistInfo,
                       guard: CollapseGuard) -> dict[str, Any]:
    """Load model, optimiser, step and collapse-guard state from ``path``; return the checkpoint dict.

    The global batch must be unchanged (the data position and the schedules count in its units). A different
    split of it (batch size vs world size vs accumulation) is allowed but changes which clips land where.
    """
    ckpt = load_checkpoint(path)
    data = ckpt.get("data", {})
    old = data.get("batch_size", 0) * data.get("world_size", 0) * data.get("accumulate", 0)
    new = cfg.data.batch_size * info.world_size * cfg.trainer.accumulate
    if old != new:
        raise ConfigError(f"cannot resume {path}: its global batch was {old} clips, this run's is {new} "
                          f"(data.batch_size * world_size * trainer.accumulate must stay the same)")
    if (data["batch_size"], data["world_size"]) != (cfg.data.batch_size, info.world_size):
        logger.warning("resuming with a different batch split (%s x %s -> %s x %s): same global batch, "
                       "but not the same clips per step as the original run", data["batch_size"],
                       data["world_size"], cfg.data.batch_size, info.world_size)
    try:
        state.model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit this model config ({exc})") from None
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.step = int(ckpt["step"])
    if "collapse_guard" in ckpt:
        guard.load_state_dict(ckpt["collapse_guard"])
    return ckpt


def warn_config_drift(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Log (and return) the config sections that differ between a checkpoint and this run.

    Changes are allowed (a longer ``trainer.max_steps`` is the usual one) but worth a line in the log.
    """
    changed = [k for k in ("model", "objective", "masking", "data", "optim", "trainer", "frontend", "seed")
               if k in saved and k in current and saved[k] != current[k]]
    if changed:
        logger.warning("resuming with changed config section(s) %s", changed)
    return changed


# ------------------------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """Where a finished run put its outputs (absolute paths) and how it went."""

    run_dir: Path
    checkpoint: Path | None
    metrics: Path
    tensorboard: Path | None
    plots: dict[str, Path]
    steps: int
    seconds: float
    final_loss: float | None
    skipped_files: list[str]
    records: list[dict] = field(repr=False, default_factory=list)


def cpu_thread_count(setting: int | str, num_workers: int, procs_per_node: int) -> int | None:
    """Intra-op threads for CPU training: ``auto`` gives each process the cores left over by its DataLoader
    workers (at least 1), unless ``OMP_NUM_THREADS`` already decides; None leaves torch's default.

    Oversubscribed cores are far worse than idle ones here: every parallel op waits for its slowest thread,
    and a descheduled thread stalls it for a whole time slice (10x slower steps on a busy 2-core machine).
    """
    if setting != "auto":
        return int(setting)
    if "OMP_NUM_THREADS" in os.environ:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, procs_per_node) - num_workers)


@contextlib.contextmanager
def _cpu_threads(count: int | None) -> Iterator[None]:
    """``torch.set_num_threads(count)`` for the duration of the run, then the caller's setting back."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the duration of the run, then the caller's setting back."""
    previous = torch.are_deterministic_algorithms_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def should_log(step: int, log_every: int, max_steps: int) -> bool:
    """Log every ``log_every`` completed steps and at the last one."""
    return step % log_every == 0 or step == max_steps


def train(cfg: RunConfig, run_dir: str | os.PathLike) -> TrainResult:
    """Train per ``cfg`` into ``run_dir`` (under torchrun: rank 0's directory) and return the outputs.

    Joins and leaves the torchrun process group when launched with several processes. The caller's global
    RNG state is left untouched.
    """
    info = D.env_dist_info()
    device = D.rank_device(cfg.device, info)
    info = D.init_distributed(device)
    try:
        run_dir = Path(D.broadcast_object(str(Path(run_dir).resolve()), info))
        cuda_devices = [device] if device.type == "cuda" else []
        threads = None
        if device.type == "cpu":
            local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if info.enabled else 1
            threads = cpu_thread_count(cfg.trainer.cpu_threads, cfg.data.num_workers, local_procs)
        with (torch.random.fork_rng(devices=cuda_devices), _deterministic(cfg.trainer.deterministic),
              _cpu_threads(threads)):
            return _train(cfg, RunPaths(run_dir), info, device)
    finally:
        D.shutdown_distributed()


def _train(cfg: RunConfig, paths: RunPaths, info: D.DistInfo, device: torch.device) -> TrainResult:
    run = _Run(cfg, paths, info, device)
    try:
        run.loop()
    finally:
        run.close()
    return run.finish()


class _Run:
    """One training run: the built pieces plus the per-step jobs (step, log, checkpoint, finish)."""

    def __init__(self, cfg: RunConfig, paths: RunPaths, info: D.DistInfo, device: torch.device) -> None:
        self.t_start = time.perf_counter()
        self.cfg, self.paths, self.info, self.device = cfg, paths, info, device
        tc = cfg.trainer
        self.frontend = build_frontend(cfg.frontend, device)
        self.grid = clip_grid(self.frontend, cfg.data.clip_seconds, cfg.model.encoder.patch)
        model = build_model(cfg, device)
        self.state = TrainState(model=model, ddp=model, forward=model,
                                optimizer=build_optimizer(model, cfg.optim, device))
        self.guard = CollapseGuard(tc.collapse.threshold, tc.collapse.patience, tc.collapse.abort)
        self.resumed_from = resolve_resume(cfg.resume, paths)
        if self.resumed_from is not None:
            ckpt = restore_checkpoint(self.resumed_from, self.state, cfg, info, self.guard)
            if info.is_main:
                warn_config_drift(ckpt.get("config", {}), asdict(cfg))
        self.start_step = self.state.step
        self.last_saved = self.start_step if self.resumed_from is not None else -1
        self.state.ddp = D.wrap_ddp(model, info, device)
        self.state.forward = maybe_compile(self.state.ddp, tc.compile, tc.compile_backend)
        model.train()

        dataset = build_dataset(cfg.data, cfg.frontend.sample_rate, cfg.seed, info)
        self.loader, self.data_position = build_loader(cfg, dataset, self.grid, info,
                                                 start_batch=self.start_step * tc.accumulate)
        self.amp_dtype = autocast_dtype(tc.precision, device)
        self.global_batch = cfg.data.batch_size * info.world_size * tc.accumulate
        self.metrics = MetricsLogger(paths, self.start_step, tc.tensorboard) if info.is_main else None
        self.bar = tqdm(total=tc.max_steps, initial=self.start_step, unit="step", dynamic_ncols=True,
                        disable=not (info.is_main and tc.progress))
        self.skipped: set[str] = set()
        self.sample: dict[str, Any] | None = None
        self.window_start, self.window_steps = time.perf_counter(), 0
        self._announce()

    def _announce(self) -> None:
        if not self.info.is_main:
            return
        cfg, tc = self.cfg, self.cfg.trainer
        n_params = sum(p.numel() for p in self.state.model.parameters() if p.requires_grad)
        logger.info("%s: %s model (%.2f M trainable), objective %s, %s clips of %.2f s -> grid %s, global batch "
                    "%d (%d x %d ranks x %d accumulate), device %s, precision %s, steps %d -> %d%s",
                    self.paths.root, cfg.model.name, n_params / 1e6, cfg.objective.name, cfg.data.source,
                    cfg.data.clip_seconds, self.grid, self.global_batch, cfg.data.batch_size, self.info.world_size,
                    tc.accumulate, self.device, self.amp_dtype or "fp32", self.start_step, tc.max_steps,
                    f" (resumed from {self.resumed_from})" if self.resumed_from else "")

    def loop(self) -> None:
        """Step until ``trainer.max_steps``, logging and checkpointing on their cadences."""
        tc = self.cfg.trainer
        batches = iter(self.loader)  # endless: the sampler never stops, the loop does
        with logging_redirect_tqdm():
            while self.state.step < tc.max_steps:
                hp, out = self.step(batches)
                if should_log(self.state.step, tc.log_every, tc.max_steps):
                    self.log(hp, out)
                if self.state.step % tc.checkpoint_every == 0 or self.state.step == tc.max_steps:
                    self.checkpoint(keep_step=tc.keep_step_checkpoints)

    def step(self, batches: Iterator[dict]) -> tuple[StepHyper, StepOutput]:
        """Fetch ``accumulate`` micro-batches and run one optimiser step."""
        micro = [next(batches) for _ in range(self.cfg.trainer.accumulate)]
        for batch in micro:
            self.skipped.update(batch["skipped"])
        hp = hyperparams_at(self.state.step, self.cfg.optim, self.cfg.trainer.max_steps)
        torch.manual_seed(step_seed(self.cfg.seed, self.info.rank, self.state.step))
        out = train_step(self.state, [to_device(b, self.device) for b in micro], hp, self.frontend, self.amp_dtype,
                         self.cfg.optim.grad_clip)
        self.sample = out.sample
        self.window_steps += 1
        self.bar.update(1)
        return hp, out

    def log(self, hp: StepHyper, out: StepOutput) -> None:
        """Metrics (all ranks: a collective), then rank 0 writes them; non-finite loss and collapse checks."""
        values = step_metrics(out, self.info)
        now = time.perf_counter()
        record = {"step": self.state.step, **values, "lr": hp.lr, "wd": hp.weight_decay, "momentum": hp.momentum,
                  "clips_per_s": self.global_batch * self.window_steps / max(now - self.window_start, 1e-9)}
        self.window_start, self.window_steps = now, 0
        if self.metrics is not None:
            self.metrics.log(record)
            logger.info(format_record(record, self.cfg.trainer.max_steps))
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", rank=f"{record['effective_rank']:.1f}")
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(f"non-finite loss {values['loss']} at step {self.state.step}; "
                                     f"last good checkpoint: {self.paths.last_checkpoint}")
        try:
            self.guard.update(values["effective_rank"], self.state.step)
        except CollapseError:
            self.checkpoint(keep_step=False)  # keep the collapsed state for inspection
            raise

    def checkpoint(self, keep_step: bool) -> None:
        """Rank 0 writes ``last.pt`` (and ``step_XXXXXX.pt`` when ``keep_step``)."""
        if self.info.is_main:
            ckpt = checkpoint_state(self.state, self.cfg, self.info, self.data_position, self.guard)
            save_training_checkpoint(self.paths, ckpt, keep_step)
        self.last_saved = self.state.step

    def close(self) -> None:
        """Release the progress bar and log writers (also after an error)."""
        self.bar.close()
        if self.metrics is not None:
            self.metrics.close()

    def finish(self) -> TrainResult:
        """Final checkpoint if needed, the skipped-file report, plots; the outputs."""
        if self.last_saved != self.state.step:  # e.g. resumed a run that had already finished
            self.checkpoint(keep_step=False)
        skipped = sorted(set().union(*D.all_gather_objects(sorted(self.skipped), self.info)))
        records = self.metrics.records if self.metrics is not None else []
        plots: dict[str, Path] = {}
        if self.info.is_main:
            if skipped:
                logger.warning("%d unreadable audio file(s) were skipped, e.g. %s", len(skipped), skipped[:5])
            if self.cfg.trainer.plots:
                plots = write_plots(self.paths, records, self.sample, self.cfg)
        return TrainResult(
            run_dir=self.paths.root, checkpoint=self.paths.last_checkpoint if self.info.is_main else None,
            metrics=self.paths.metrics, tensorboard=self.paths.tensorboard if self.cfg.trainer.tensorboard else None,
            plots=plots, steps=self.state.step, seconds=time.perf_counter() - self.t_start,
            final_loss=records[-1]["loss"] if records else None, skipped_files=skipped, records=records)


def write_plots(paths: RunPaths, records: list[dict], sample: dict[str, Any] | None, cfg: RunConfig) -> dict[str, Path]:
    """``plots/loss.png``, ``plots/rank.png`` and (when a step ran) ``plots/masks.png``."""
    from ajepa import plots  # matplotlib is only needed here

    written = {"loss": plots.plot_loss(records, paths.plots / "loss.png"),
               "rank": plots.plot_rank(records, paths.plots / "rank.png")}
    if sample is not None:
        written["masks"] = plots.plot_masks(sample["spec"], sample["grid"], cfg.model.encoder.patch,
                                            sample["context_idx"], sample["target_idx"], paths.plots / "masks.png",
                                            hop_ms=cfg.frontend.hop_ms)
    return written
