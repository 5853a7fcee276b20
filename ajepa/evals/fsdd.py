"""Free Spoken Digit Dataset probe: speaker-grouped k-fold (default) or the data set's own split.

    python -m ajepa.evals.fsdd --data PATH/free-spoken-digit-dataset --model PATH_OR_random:SIZE \\
        [--split grouped|official] [--folds 5] [--probe linear] [--baselines logmel,random]

``grouped`` keeps every speaker on one side (a test of speaker-independent digit recognition);
``official`` is the data set's split (recording index 0-4 test, 5-49 train), which shares speakers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ajepa.evals.datasets import grouped_folds, read_fsdd
from ajepa.evals.probes import Split, splits_from_folds
from ajepa.evals.report import Task, add_common_arguments, cli_main, resolve_data, run_task

LAYOUT = "recordings/{digit}_{speaker}_{index}.wav"


def build_parser() -> argparse.ArgumentParser:
    """The ``ajepa.evals.fsdd`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.fsdd", description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--split", choices=("grouped", "official"), default="grouped",
                   help="speaker-grouped k-fold (default) or the data set's own split")
    return p


def looks_ok(root: Path) -> bool:
    """Whether ``root`` (or its ``recordings/``) holds ``{digit}_{speaker}_{index}.wav`` files."""
    root = Path(root)
    rec = root / "recordings" if (root / "recordings").is_dir() else root
    return rec.is_dir() and any(rec.glob("*_*_*.wav"))


def load_task(root: str | Path, *, split: str = "grouped", seed: int = 0, folds: int = 5) -> Task:
    """FSDD with its protocol: ``folds``-fold CV grouped by speaker (seed ``seed``), or the data set's own split."""
    clips = read_fsdd(root).without_unreadable()
    if split == "official":
        s = clips.split
        splits = [Split("official", np.flatnonzero(s == "train"), np.flatnonzero(s == "test"))]
        return Task(clips.name, clips, splits, "own split (index 0-4 test; speakers shared)", check_groups=False)
    if split != "grouped":
        raise ValueError(f"split must be 'grouped' or 'official', got {split!r}")
    splits = splits_from_folds(grouped_folds(clips.labels, clips.groups, folds, seed))
    return Task(clips.name, clips, splits, f"{folds}-fold CV grouped by speaker")


def run(args: argparse.Namespace, **run_kwargs) -> list:
    """Read the data, run the probes, write the report."""
    data = resolve_data(args, "fsdd", looks_ok, LAYOUT)
    return run_task(args, load_task(data, split=args.split, seed=args.seed, folds=args.folds), **run_kwargs)


def main(argv: Sequence[str] | None = None, **run_kwargs) -> int:
    """CLI entry point; ``run_kwargs`` go to :func:`ajepa.evals.report.run_task`."""
    return cli_main(build_parser(), argv, lambda a: run(a, **run_kwargs))


if __name__ == "__main__":
    sys.exit(main())
