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

import torch
from torch import Tensor
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ajepa.training import distributed as D
from ajepa.training.config import RunConfig
from ajepa.errors import ConfigError
from ajepa.training.loader import build_dataset, build_loader
from ajepa.features.audio import clip_samples
from ajepa.features.logmel import LogMelFrontend
from ajepa.features.tokenizer import AudioTokenizer
from ajepa.training.model import AudioJEPA
from ajepa.training.monitors import CollapseError, CollapseGuard, effective_rank
from ajepa.training.optim import StepHyper, apply_hyperparams, build_optimizer, hyperparams_at
from ajepa.training.run_files import (
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
from ajepa.seeding import seed_from
from ajepa.runtime import autocast_dtype, cpu_thread_count, cpu_threads, deterministic, maybe_compile
from ajepa.inference.model_files import check_encoder_weights, read_model_file
from ajepa.inference.readout import resolve_average_layers
from ajepa.training.run_guard import RunDirectoryError, RunLock, check_reuse, remove_stale_temporaries
from ajepa.training.state import StepOutput, TrainState
from ajepa.training.transfer_probe import TransferProbe, read_probe_manifest

logger = logging.getLogger(__name__)

__all__ = [
    "TrainResult", "build_model", "build_tokenizer",
    "train_step", "train",
]


# ------------------------------------------------------------------------------------------ building


def build_model(cfg: RunConfig, device: torch.device) -> AudioJEPA:
    """The AudioJEPA, initialised on the CPU from ``cfg.seed`` alone (same weights on every rank and device)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = AudioJEPA(cfg.model.encoder, cfg.model.predictor, cfg.objective)
    return model.to(device)


def load_teacher(model: AudioJEPA, cfg: RunConfig) -> None:
    """Load ``cfg.objective.teacher``'s encoder (a checkpoint's default encoder, or an export's) into the model's
    frozen target encoder, once, when a run starts: a resumed run reads its teacher from its own checkpoint, so
    the teacher's file is needed only at the start. The teacher must have the run's encoder shape and front end:
    its features of other log-mels would be targets for another input.

    Raises:
        CheckpointError: an unreadable model file, or weights that do not fit the run's encoder.
        ConfigError: a teacher with another encoder shape or front end than the run's.
    """
    path = cfg.objective.teacher
    state, teacher = read_model_file(path)
    for key, ours in (("encoder", cfg.model.encoder), ("frontend", cfg.frontend)):
        if teacher[key] != ours:
            raise ConfigError(f"objective.teacher={path}: its {key} {teacher[key]} differs from the run's {ours}")
    check_encoder_weights(cfg.model.encoder, state, path)
    model.target_encoder.load_state_dict(state, strict=True)


def build_tokenizer(cfg: RunConfig, device: torch.device) -> AudioTokenizer:
    """The log-mel front end (on ``device``) and the encoder's patch shape: waveforms -> tokens for training."""
    return AudioTokenizer(LogMelFrontend(cfg.frontend).to(device), cfg.model.encoder.patch)


def build_probe(cfg: RunConfig) -> TransferProbe | None:
    """The run's transfer probe (``trainer.probe.manifest``), its clips decoded; None without a manifest."""
    pc = cfg.trainer.probe
    if pc.manifest is None:
        return None
    try:  # checked against the encoder's depth now, not at the first probe hundreds of steps in
        resolve_average_layers(pc.average_layers, cfg.model.encoder.depth)
    except ValueError as e:
        raise ConfigError(f"trainer.probe.average_layers: {e}") from None
    return TransferProbe(pc, read_probe_manifest(pc.manifest), cfg.frontend.sample_rate, cfg.seed)


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the global torch RNG during ``step`` on ``rank`` (drop-path and any other in-model sampling)."""
    return seed_from(seed, rank, step, 0x5EED)


# ------------------------------------------------------------------------------------------ the step


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a collated batch to ``device`` (asynchronously from pinned memory)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def train_step(state: TrainState, micro_batches: list[dict], hp: StepHyper, tokenizer: AudioTokenizer,
               amp_dtype: torch.dtype | None, grad_clip: float, ignore_padding: bool = True) -> StepOutput:
    """One optimiser step over ``len(micro_batches)`` accumulated micro-batches, then the EMA update.

    Gradients are all-reduced (DDP) only on the last micro-batch. The loss of each micro-batch is scaled by
    ``1 / accumulate`` so the update equals that of one batch ``accumulate`` times larger. ``ignore_padding``:
    the tokenizer marks zero-padded tokens, which the objective then leaves out.
    """
    apply_hyperparams(state.optimizer, hp)
    scale = 1.0 / len(micro_batches)
    forward = state.loss_module
    losses, stds, terms = [], [], []
    for i, batch in enumerate(micro_batches):
        tok = tokenizer(batch["wav"], batch["lengths"] if ignore_padding else None)
        is_last = i == len(micro_batches) - 1
        no_sync = getattr(forward, "no_sync", None)
        sync_ctx = no_sync() if (no_sync is not None and not is_last) else contextlib.nullcontext()
        amp = torch.autocast(tok.tokens.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with sync_ctx:
            with amp:
                out = forward(tok.tokens, tok.grid, batch["context_idx"], batch["target_idx"], tok.valid)
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
    sample = {"spec": tok.spec[0], "grid": tok.grid, "context_idx": batch["context_idx"][0],
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
    start_step: int = 0  # the step the run resumed at (0 for a fresh run)


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
    lock = RunLock(Path(run_dir).resolve())
    try:
        run_dir = Path(D.broadcast_object(str(Path(run_dir).resolve()), info))
        # Rank 0 owns the directory: it takes the lock and checks for an earlier run; every rank hears the verdict.
        problem = None
        if info.is_main:
            try:
                lock.acquire()
                check_reuse(RunPaths(run_dir), cfg.resume, cfg.overwrite)
                remove_stale_temporaries(RunPaths(run_dir))
            except RunDirectoryError as exc:
                problem = str(exc)
        problem = D.broadcast_object(problem, info)
        if problem is not None:
            raise RunDirectoryError(problem)
        cuda_devices = [device] if device.type == "cuda" else []
        threads = None
        if device.type == "cpu":
            local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if info.enabled else 1
            threads = cpu_thread_count(cfg.trainer.cpu_threads, cfg.data.num_workers, local_procs)
        with (torch.random.fork_rng(devices=cuda_devices), deterministic(cfg.trainer.deterministic),
              cpu_threads(threads)):
            return _train(cfg, RunPaths(run_dir), info, device)
    finally:
        lock.release()
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
        self.tokenizer = build_tokenizer(cfg, device)
        self.grid = self.tokenizer.grid(clip_samples(cfg.data.clip_seconds, cfg.frontend.sample_rate))
        model = build_model(cfg, device)
        self.state = TrainState(model=model, optimizer=build_optimizer(model, cfg.optim, device))
        self.guard = CollapseGuard(tc.collapse.threshold, tc.collapse.patience, tc.collapse.abort)
        self.resumed_from = resolve_resume(cfg.resume, paths)
        if self.resumed_from is None and cfg.objective.teacher is not None:
            load_teacher(model, cfg)  # before DDP wraps the model; a resumed run's checkpoint holds the teacher
        if self.resumed_from is not None:
            ckpt = restore_checkpoint(self.resumed_from, self.state, cfg, info, self.guard)
            if info.is_main:
                warn_config_drift(ckpt.get("config", {}), asdict(cfg))
        self.start_step = self.state.step
        self.last_saved = self.start_step if self.resumed_from is not None else -1
        self.state.forward = maybe_compile(D.wrap_ddp(model, info, device), tc.compile, tc.compile_backend)
        model.train()

        dataset = build_dataset(cfg.data, cfg.frontend.sample_rate, cfg.seed, info)
        self.loader, self.batches_per_epoch = build_loader(cfg, dataset, self.grid, info,
                                                 start_batch=self.start_step * tc.accumulate)
        self.amp_dtype = autocast_dtype(tc.precision, device)
        self.global_batch = cfg.data.batch_size * cfg.data.crops_per_item * info.world_size * tc.accumulate
        self.metrics = MetricsLogger(paths, self.start_step, tc.tensorboard) if info.is_main else None
        self.bar = tqdm(total=tc.max_steps, initial=self.start_step, unit="step", dynamic_ncols=True,
                        disable=not (info.is_main and tc.progress))
        self.skipped: set[str] = set()
        self.sample: dict[str, Any] | None = None
        self.probe = build_probe(cfg) if info.is_main else None
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
        if cfg.objective.teacher is not None:
            logger.info("frozen teacher %s: no EMA (the logged ema is unused); the result is the context encoder",
                        cfg.objective.teacher)

    def loop(self) -> None:
        """Step until ``trainer.max_steps``, logging and checkpointing on their cadences."""
        tc = self.cfg.trainer
        batches = iter(self.loader)  # endless: the sampler never stops, the loop does
        with logging_redirect_tqdm():
            while self.state.step < tc.max_steps:
                hp, out = self.step(batches)
                probe_due = tc.probe.manifest is not None and should_log(
                    self.state.step, tc.probe.every, tc.max_steps)
                if probe_due or should_log(self.state.step, tc.log_every, tc.max_steps):
                    self.log(hp, out, probe_due)
                if self.state.step % tc.checkpoint_every == 0 or self.state.step == tc.max_steps:
                    self.checkpoint(keep_step=tc.keep_step_checkpoints)

    def step(self, batches: Iterator[dict]) -> tuple[StepHyper, StepOutput]:
        """Fetch ``accumulate`` micro-batches and run one optimiser step."""
        micro = [next(batches) for _ in range(self.cfg.trainer.accumulate)]
        for batch in micro:
            self.skipped.update(batch["skipped"])
        hp = hyperparams_at(self.state.step, self.cfg.optim, self.cfg.trainer.max_steps)
        torch.manual_seed(step_seed(self.cfg.seed, self.info.rank, self.state.step))
        out = train_step(self.state, [to_device(b, self.device) for b in micro], hp, self.tokenizer, self.amp_dtype,
                         self.cfg.optim.grad_clip, self.cfg.objective.ignore_padding)
        self.sample = out.sample
        self.window_steps += 1
        self.bar.update(1)
        return hp, out

    def log(self, hp: StepHyper, out: StepOutput, probe_due: bool = False) -> None:
        """Metrics (all ranks: a collective), then rank 0 writes them; non-finite loss and collapse checks.
        ``probe_due``: rank 0 also runs the transfer probe (``probe_accuracy``), outside the clips/s window."""
        values = step_metrics(out, self.info)
        now = time.perf_counter()
        record = {"step": self.state.step, **values, "lr": hp.lr, "wd": hp.weight_decay, "momentum": hp.momentum,
                  "clips_per_s": self.global_batch * self.window_steps / max(now - self.window_start, 1e-9)}
        if probe_due and self.probe is not None:
            model = self.state.model
            record["probe_accuracy"] = self.probe.measure(model.learned_encoder, self.tokenizer.frontend,
                                                          self.cfg.data.clip_seconds)
            now = time.perf_counter()
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
            ckpt = checkpoint_state(self.state, self.cfg, self.info, self.batches_per_epoch, self.guard)
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
            final_loss=records[-1]["loss"] if records else None, skipped_files=skipped, records=records,
            start_step=self.start_step)
