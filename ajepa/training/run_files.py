"""The files of a run directory: paths, the metrics log, checkpoints, resume and plots.

Everything here reads or writes a run directory (layout: :class:`RunPaths`); the loop that decides when is
:mod:`ajepa.training.loop`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ajepa.training import distributed as D
from ajepa.checkpoint import load_checkpoint, save_checkpoint
from ajepa.training.config import RunConfig
from ajepa.errors import CheckpointError, ConfigError
from ajepa.extras import require
from ajepa.training.monitors import CollapseGuard
from ajepa.training.state import TrainState


logger = logging.getLogger(__name__)

__all__ = [
    "MetricsLogger", "RunPaths", "checkpoint_state", "format_record", "resolve_resume", "restore_checkpoint",
    "save_training_checkpoint", "warn_config_drift", "write_plots",
]


# ---------------------------------------------------------------------------------- paths and metrics


@dataclass(frozen=True)
class RunPaths:
    """The files of a run directory: Hydra's run dir (``outputs/<date>/<time>/`` unless ``hydra.run.dir=``).

    ``checkpoints/last.pt`` (and ``step_XXXXXX.pt`` with ``trainer.keep_step_checkpoints``); ``metrics.jsonl``,
    one JSON object per logged step (step, loss, lr, wd, momentum, target_std, effective_rank, grad_norm,
    clips_per_s and the unweighted loss terms ``loss_prediction`` [, ``loss_variance``, ``loss_covariance``]);
    ``tb/`` (TensorBoard); ``plots/loss.png``, ``plots/rank.png``, ``plots/masks.png``; ``.hydra/config.yaml``.
    """

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
    """The records up to ``max_step``. A line that is not a JSON object (the torn last line of a process killed
    mid-write, or damage) is dropped with a warning instead of blocking the resume."""
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                logger.warning("%s: dropping line %d, which is not a complete JSON record (a write cut short?)",
                               path, number)
                continue
            records.append(record)
    return [r for r in records if isinstance(r.get("step"), int) and r["step"] <= max_step]


def format_record(record: dict, max_steps: int) -> str:
    """One console line for a metrics record."""
    return (f"step {record['step']}/{max_steps} | loss {record['loss']:.4f} | lr {record['lr']:.2e} | "
            f"wd {record['wd']:.3f} | ema {record['momentum']:.4f} | std {record['target_std']:.3f} | "
            f"rank {record['effective_rank']:.1f} | {record['clips_per_s']:.1f} clips/s"
            + (f" | probe {record['probe_accuracy']:.3f}" if "probe_accuracy" in record else ""))


# --------------------------------------------------------------------------------------- checkpoints


def checkpoint_state(state: TrainState, cfg: RunConfig, info: D.DistInfo, batches_per_epoch: int,
                     guard: CollapseGuard) -> dict[str, Any]:
    """The checkpoint dict: tensors and plain Python values only, so ``torch.load(weights_only=True)`` reads it.

    ``{"step", "model": AudioJEPA.state_dict() (keys context_encoder.*, target_encoder.*, predictor.*),
    "optimizer", "rng": the seeding scheme, "data": {"epoch", "batch_in_epoch", "global_batch_index", "batch_size",
    "world_size", "accumulate"}, "collapse_guard", "config"}``;
    :func:`ajepa.checkpoint.save_checkpoint` adds the format and version. No RNG state is stored: every random
    stream is a function of the seed and a position (:mod:`ajepa.seeding`), so the step resumes a run exactly.
    ``config`` is the effective run config (``asdict(cfg)``: defaults filled in, ``data.root`` absolute and
    the source it implies), which :func:`run_config_from_dict` reads back.
    """
    global_batch_index = state.step * cfg.trainer.accumulate
    epoch, batch_in_epoch = divmod(global_batch_index, max(1, batches_per_epoch))
    return {
        "step": state.step,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        # All randomness is a pure function of (seed, position); see ajepa.training.loop's docstring.
        "rng": {"seed": cfg.seed, "scheme": "per-position (seed, batch_index) / (seed, rank, step)"},
        "data": {"epoch": epoch, "batch_in_epoch": batch_in_epoch, "global_batch_index": global_batch_index,
                 "batch_size": cfg.data.batch_size, "world_size": info.world_size,
                 "accumulate": cfg.trainer.accumulate},
        "collapse_guard": guard.state_dict(),
        "config": asdict(cfg),
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


# --------------------------------------------------------------------------------------------- plots


def write_plots(paths: RunPaths, records: list[dict], sample: dict[str, Any] | None, cfg: RunConfig) -> dict[str, Path]:
    """``plots/loss.png``, ``plots/rank.png``, (when a step ran) ``plots/masks.png`` and (with a transfer probe)
    ``plots/probe.png``."""
    require("matplotlib", "train")
    from ajepa.training import plots  # matplotlib is only needed here

    written = {"loss": plots.plot_loss(records, paths.plots / "loss.png"),
               "rank": plots.plot_rank(records, paths.plots / "rank.png")}
    if any("probe_accuracy" in r for r in records):
        written["probe"] = plots.plot_curve(records, "probe_accuracy", paths.plots / "probe.png",
                                            title="transfer probe (trainer.probe)", ylabel="accuracy")
    if sample is not None:
        written["masks"] = plots.plot_masks(sample["spec"], sample["grid"], cfg.model.encoder.patch,
                                            sample["context_idx"], sample["target_idx"], paths.plots / "masks.png",
                                            hop_ms=cfg.frontend.hop_ms)
    return written
