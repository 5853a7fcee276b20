"""Speech Commands v0.02 probe (12-class by default, or 35-class).

    python -m evals.speech_commands --data PATH --model PATH_OR_random:SIZE [--task 12|35] \\
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

from evals.datasets import grouped_folds, read_speech_commands
from evals.probes import Split, splits_from_folds
from evals.report import add_common_arguments, cli_main, resolve_data, run_task

LAYOUT = ("{word}/*.wav with validation_list.txt, testing_list.txt and _background_noise_/ (full release), "
          "or the 12 label folders of the test-set archive incl. _unknown_/ and _silence_/")


def _looks_ok(root: Path) -> bool:
    return (root / "testing_list.txt").is_file() or (root / "_unknown_").is_dir()


def build_parser() -> argparse.ArgumentParser:
    """The ``evals.speech_commands`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m evals.speech_commands", description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--task", choices=("12", "35"), default="12", help="12-class (default) or 35-class")
    p.add_argument("--silence-dir", default=None,
                   help="where the 12-class _silence_ cuts are written (default under ~/.cache/ajepa)")
    return p


def run(args: argparse.Namespace, **run_kwargs) -> list:
    """Read the data, pick the protocol, run the probes, write the report."""
    data = resolve_data(args, "speech_commands", _looks_ok, LAYOUT)
    clips = read_speech_commands(data, args.task, seed=args.seed, silence_dir=args.silence_dir)
    if clips.split is not None:
        s = clips.split
        splits = [Split("official", np.flatnonzero(s == "train"), np.flatnonzero(s == "test"),
                        np.flatnonzero(s == "validation"))]
        protocol = "official split (train / validation lists for early stopping / test list)"
    else:
        splits = splits_from_folds(grouped_folds(clips.labels, clips.groups, args.folds, args.seed))
        protocol = f"{args.folds}-fold CV grouped by speaker (no official lists)"
    return run_task(args, task=clips.name, clips=clips, splits=splits, protocol=protocol, **run_kwargs)


def main(argv: Sequence[str] | None = None, **run_kwargs) -> int:
    """CLI entry point; ``run_kwargs`` go to :func:`evals.report.run_task`."""
    return cli_main(build_parser(), argv, lambda a: run(a, **run_kwargs))


if __name__ == "__main__":
    sys.exit(main())
