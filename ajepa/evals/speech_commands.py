"""Speech Commands v0.02 probe (12-class by default, or 35-class).

    python -m ajepa.evals.speech_commands --data PATH --model PATH_OR_random:SIZE [--task 12|35] \\
        [--probe linear] [--baselines logmel,random] [--folds 5] [--out DIR] [--seed N]

With the full release (validation_list.txt and testing_list.txt present) the official split is used: the
probe trains on train, early-stops on validation and is scored on test (one split, std 0). With the
test-set archive layout (12 class folders, no lists) the report uses speaker-grouped stratified k-fold
cross-validation instead (no speaker in both train and test; each _silence_ clip is its own group),
and says so in its protocol column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ajepa.evals.datasets import grouped_folds, read_speech_commands
from ajepa.evals.probes import Split, splits_from_folds
from ajepa.evals.report import Task, add_common_arguments, cli_main, resolve_data, run_task

LAYOUT = ("{word}/*.wav with validation_list.txt, testing_list.txt and _background_noise_/ (full release), "
          "or the 12 label folders of the test-set archive incl. _unknown_/ and _silence_/")


def looks_ok(root: Path) -> bool:
    """Whether ``root`` has the full-release or the test-set-archive layout."""
    root = Path(root)
    return (root / "testing_list.txt").is_file() or (root / "_unknown_").is_dir()


def load_task(root: str | Path, *, task: str = "12", seed: int = 0, folds: int = 5,
              silence_dir: str | Path | None = None) -> Task:
    """Speech Commands with its protocol: the official split (full release) or ``folds``-fold CV grouped by
    speaker with seed ``seed`` (test-set archive)."""
    clips = read_speech_commands(root, task, seed=seed, silence_dir=silence_dir).without_unreadable()
    if clips.split is not None:
        s = clips.split
        splits = [Split("official", np.flatnonzero(s == "train"), np.flatnonzero(s == "test"),
                        np.flatnonzero(s == "validation"))]
        protocol = "official split (train / validation lists for early stopping / test list)"
    else:
        splits = splits_from_folds(grouped_folds(clips.labels, clips.groups, folds, seed))
        protocol = f"{folds}-fold CV grouped by speaker (no official lists)"
    return Task(clips.name, clips, splits, protocol)


def build_parser() -> argparse.ArgumentParser:
    """The ``ajepa.evals.speech_commands`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.speech_commands", description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--task", choices=("12", "35"), default="12", help="12-class (default) or 35-class")
    p.add_argument("--silence-dir", default=None,
                   help="where the 12-class _silence_ cuts are written (default under ~/.cache/ajepa)")
    return p


def run(args: argparse.Namespace, **run_kwargs) -> list:
    """Read the data, pick the protocol, run the probes, write the report."""
    data = resolve_data(args, "speech_commands", looks_ok, LAYOUT)
    task = load_task(data, task=args.task, seed=args.seed, folds=args.folds, silence_dir=args.silence_dir)
    return run_task(args, task, **run_kwargs)


def main(argv: Sequence[str] | None = None, **run_kwargs) -> int:
    """CLI entry point; ``run_kwargs`` go to :func:`ajepa.evals.report.run_task`."""
    return cli_main(build_parser(), argv, lambda a: run(a, **run_kwargs))


if __name__ == "__main__":
    sys.exit(main())
