"""``python -m ajepa.train [overrides]``: Audio-JEPA pre-training with Hydra configs (``configs/``).

Examples::

    python -m ajepa.train                                   # mini model, synthetic audio, a few CPU minutes
    python -m ajepa.train data.root=../shared/data          # the same on a folder of real audio
    python -m ajepa.train model=tiny objective=mae masking=curriculum trainer.max_steps=10000 seed=3
    python -m ajepa.train hydra.run.dir=outputs/run1 resume=true       # continue outputs/run1
    torchrun --nproc_per_node=4 -m ajepa.train model=small data.root=/data/audioset   # DDP

This module is only the Hydra layer: it composes the config, makes paths absolute, hands a typed
:class:`~ajepa.training.config.RunConfig` to :func:`ajepa.training.loop.train` and prints where the outputs went.
See docs/TRAINING.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ajepa.extras import require

require("hydra", "train", "hydra-core")  # a missing extra says which to install, not just "no module hydra"

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from ajepa.errors import AjepaError  # noqa: E402
from ajepa.training.distributed import env_dist_info
from ajepa.training.config import RunConfig, run_config_from_dict
from ajepa.paths import config_dir
from ajepa.training.loop import TrainResult, train
from ajepa.training.run_files import RunPaths
from ajepa.training.run_guard import describe_run


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
    """Make the user-given paths (``data.root``, a ``resume`` path, ``objective.teacher``) absolute against the
    launch directory."""
    data = config.get("data", {})
    if data.get("root"):
        data["root"] = os.path.normpath(to_absolute_path(str(data["root"])))
    objective = config.get("objective", {})
    if objective.get("teacher"):
        objective["teacher"] = os.path.normpath(to_absolute_path(str(objective["teacher"])))
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
    """Hydra entry: compose -> typed config -> train -> print the outputs. The package's own errors (a bad
    setting, an unusable file or directory) end the run with their message and exit status 2, not a traceback."""
    try:
        result = train(to_run_config(cfg), HydraConfig.get().runtime.output_dir)
    except (AjepaError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    if env_dist_info().is_main:
        print(summary(result), flush=True)


def precheck(argv: Sequence[str]) -> str | None:
    """Why the run directory named on the command line (``hydra.run.dir=``) cannot be used, or None.

    Hydra writes its ``.hydra/`` files and log into the run directory before the training code runs, so a refusal
    there would already have replaced the earlier run's config record, and a read-only directory would end in a
    logging traceback. The same checks as :func:`ajepa.training.loop.train` (which stays the authority) run
    here first.
    """
    values = dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("-"))
    run_dir = values.get("hydra.run.dir")
    if run_dir is None or not os.path.isdir(run_dir):
        return None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        return f"the run directory {os.path.abspath(run_dir)} is not writable"
    paths = RunPaths(Path(run_dir).resolve())
    held = describe_run(paths)
    fresh = values.get("resume", "false").lower() in ("false", "")
    if held is not None and fresh and values.get("overwrite", "false").lower() != "true":
        return (f"{paths.root} already holds a run: {held}. A new run here would overwrite it. Continue it with "
                f"resume=true (or resume=auto), choose another hydra.run.dir, or pass overwrite=true to start over.")
    return None


def main() -> None:
    """Console entry point; under torchrun, ranks other than 0 write no Hydra files or logs."""
    problem = precheck(sys.argv[1:])
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    if env_dist_info().rank > 0:
        # Hydra writes .hydra/ and a log file per process; rank 0's are the run's record.
        sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    hydra_main()


if __name__ == "__main__":
    main()
