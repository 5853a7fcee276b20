"""``python -m ajepa.train [overrides]``: Audio-JEPA pre-training with Hydra configs (``configs/``).

Examples::

    python -m ajepa.train                                   # mini model, synthetic audio, a few CPU minutes
    python -m ajepa.train data.root=../shared/data          # the same on a folder of real audio
    python -m ajepa.train model=tiny objective=mae masking=curriculum trainer.max_steps=10000 seed=3
    python -m ajepa.train hydra.run.dir=outputs/run1 resume=true       # continue outputs/run1
    torchrun --nproc_per_node=4 -m ajepa.train model=small data.root=/data/audioset   # DDP

This module is only the Hydra layer: it composes the config, makes paths absolute, hands a typed
:class:`~ajepa.config.RunConfig` to :func:`ajepa.trainer.train` and prints where the outputs went.
See docs/TRAINING.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from ajepa.distributed import env_dist_info
from ajepa.config import RunConfig, run_config_from_dict
from ajepa.paths import config_dir
from ajepa.trainer import TrainResult, train


CONFIG_DIR = config_dir()


def to_run_config(cfg: DictConfig) -> RunConfig:
    """A composed Hydra config -> the typed, validated run config (user paths made absolute)."""
    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    if config.get("data", {}).get("root") == "???":
        config["data"]["root"] = None  # data=folder without a root: RunConfig explains what is missing
    return run_config_from_dict(resolve_paths(config))


def compose_config(overrides: Sequence[str] = ()) -> RunConfig:
    """Compose ``configs/`` with command-line style ``overrides`` outside a Hydra app (tests, notebooks).

    Example: ``compose_config(["model=tiny", "data.root=../shared/data", "trainer.max_steps=100"])``.
    """
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return to_run_config(compose(config_name="config", overrides=list(overrides)))


def resolve_paths(config: dict[str, Any]) -> dict[str, Any]:
    """Make the user-given paths (``data.root``, a ``resume`` path) absolute against the launch directory."""
    data = config.get("data", {})
    if data.get("root"):
        data["root"] = os.path.normpath(to_absolute_path(str(data["root"])))
    resume = config.get("resume")
    if isinstance(resume, str) and resume not in ("true", "false", "auto", ""):
        config["resume"] = os.path.normpath(to_absolute_path(resume))
    return config


def summary(result: TrainResult) -> str:
    """The closing message: what ran and the absolute paths of its outputs."""
    loss = f", final loss {result.final_loss:.4f}" if result.final_loss is not None else ""
    if result.start_step and result.start_step >= result.steps:
        # resume=auto on a finished run (a rerun queue): say so rather than claim a 4-second training
        lines = [f"Nothing to train: the run had already finished at step {result.steps}{loss}"]
    elif result.start_step:
        lines = [f"Training finished: step {result.steps} ({result.steps - result.start_step} steps this time, "
                 f"resumed at step {result.start_step}) in {result.seconds:.1f} s{loss}"]
    else:
        lines = [f"Training finished: {result.steps} steps in {result.seconds:.1f} s{loss}"]
    if result.skipped_files:
        lines.append(f"  skipped {len(result.skipped_files)} unreadable file(s), e.g. {result.skipped_files[0]}")
    lines.append(f"  run dir:     {result.run_dir}")
    if result.checkpoint is not None:
        lines.append(f"  checkpoint:  {result.checkpoint}")
    lines.append(f"  metrics:     {result.metrics}")
    if result.tensorboard is not None:
        lines.append(f"  tensorboard: {result.tensorboard}   (tensorboard --logdir {result.tensorboard})")
    for name, path in result.plots.items():
        lines.append(f"  {'plot ' + name + ':':<13}{path}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry: compose -> typed config -> train -> print the outputs."""
    result = train(to_run_config(cfg), HydraConfig.get().runtime.output_dir)
    if env_dist_info().is_main:
        print(summary(result), flush=True)


def main() -> None:
    """Console entry point; under torchrun, ranks other than 0 write no Hydra files or logs."""
    if env_dist_info().rank > 0:
        # Hydra writes .hydra/ and a log file per process; rank 0's are the run's record.
        sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    hydra_main()


if __name__ == "__main__":
    main()
