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
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ajepa import distributed as D
from ajepa.config import DataConfig, OptimConfig, RunConfig
from ajepa.data import AudioClipDataset, BatchIndexSampler, SyntheticAudioDataset, collate_clips, make_loader
from ajepa.data.dataset import single_thread_worker_init
from ajepa.data.streaming import ShardedAudioStream, assign_batch_index
from ajepa.features.logmel import FrontendConfig, LogMelFrontend
from ajepa.features.patches import grid_shape, patchify, valid_tokens
from ajepa.masking import MaskCollator
from ajepa.models import AudioJEPA
from ajepa.monitors import CollapseError, CollapseGuard, effective_rank
from ajepa.run_io import (
    MetricsLogger,
    RunPaths,
    checkpoint_state,
    format_record,
    resolve_resume,
    restore_checkpoint,
    save_training_checkpoint,
    warn_config_drift,
    write_plots,
)
from ajepa.schedules import RAMPS, linear_schedule, warmup_cosine

logger = logging.getLogger(__name__)

__all__ = [
    "DataPosition", "ShardedMaskCollate", "StepHyper", "TrainResult", "TrainState", "build_model",
    "build_frontend", "clip_grid", "build_dataset", "build_loader", "build_optimizer", "hyperparams_at",
    "train_step", "train",
]


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
                            gain_db=data.gain_db, random_crop=data.random_crop, sampling=data.sampling,
                            exclude=data.exclude, cache_mb=data.cache_mb)


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
        extra = {"persistent_workers": True, "worker_init_fn": single_thread_worker_init} if workers else {}
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
    """Learning rate (warm-up + cosine), weight decay (linear) and EMA momentum for 0-based ``step``.

    The momentum follows ``optim.ema_schedule``: ``linear`` (I-JEPA) or ``cosine`` (BYOL), which holds the
    momentum near its start for longer and eases into the end value.
    """
    return StepHyper(
        lr=warmup_cosine(step, max_steps, optim.warmup(max_steps), optim.lr, optim.min_lr, optim.start_lr),
        weight_decay=linear_schedule(step, max_steps, optim.weight_decay, optim.final_weight_decay),
        momentum=RAMPS[optim.ema_schedule](step, max_steps, optim.ema_momentum, optim.final_ema_momentum),
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
    loss_terms: dict[str, Tensor] = field(default_factory=dict)


def featurize(frontend: LogMelFrontend, wav: Tensor, patch: tuple[int, int]) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """Waveforms ``(B, N)`` -> log-mel ``(B, F, T)`` and patch tokens ``(B, F_p * T_p, pf * pt)`` with the grid.

    Always fp32: a log of bf16 energies would lose most of the dynamic range.
    """
    with torch.autocast(wav.device.type, enabled=False):
        spec = frontend(wav.float())
    tokens, grid = patchify(spec, patch)
    return spec, tokens, grid


def valid_tokens_of(frontend: LogMelFrontend, lengths: Tensor, num_frames: int, grid: tuple[int, int],
                    patch: tuple[int, int]) -> Tensor:
    """``(B, N)`` bool: tokens whose time column holds real audio, from the clips' sample counts ``(B,)``."""
    return valid_tokens(frontend.valid_frames(lengths, num_frames), grid, patch)


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
    losses, stds, terms = [], [], []
    for i, batch in enumerate(micro_batches):
        spec, tokens, grid = featurize(frontend, batch["wav"], patch)
        is_last = i == len(micro_batches) - 1
        no_sync = getattr(state.ddp, "no_sync", None)
        sync_ctx = no_sync() if (no_sync is not None and not is_last) else contextlib.nullcontext()
        amp = torch.autocast(tokens.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with sync_ctx:
            with amp:
                out = state.forward(tokens, grid, batch["context_idx"], batch["target_idx"],
                                    valid_tokens_of(frontend, batch["lengths"], spec.shape[-1], grid, patch)
                                    if state.model.objective_cfg.ignore_padding else None)
            (out["loss"] * scale).backward()
        losses.append(out["loss"].detach())
        stds.append(out["target_std"].detach())
        terms.append(out["loss_terms"])
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
                      grad_norm=grad_norm.detach(), embeddings=out["target_embeddings"], sample=sample,
                      loss_terms={k: torch.stack([t[k] for t in terms]).mean() for k in terms[0]})


def step_metrics(out: StepOutput, info: D.DistInfo) -> dict[str, float]:
    """Loss, target std, gradient norm, effective rank and the unweighted loss terms (``loss_<term>``), averaged
    over ranks (a collective: all ranks call it; they share a config, so they hold the same terms)."""
    rank = effective_rank(out.embeddings)
    names = sorted(out.loss_terms)
    values = torch.stack([out.loss.float(), out.target_std.float(), out.grad_norm.float(),
                          torch.tensor(rank, device=out.loss.device), *(out.loss_terms[k].float() for k in names)])
    loss, std, grad_norm, rank, *term_values = D.all_reduce_mean(values, info).tolist()
    return {"loss": loss, "target_std": std, "effective_rank": rank, "grad_norm": grad_norm,
            **{f"loss_{k}": v for k, v in zip(names, term_values)}}


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
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn_only)


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
