"""Arabic Speech Commands probe: 40 keywords, train -> validation (speaker-disjoint), or speaker-grouped k-fold.

    python -m ajepa.evals.arabic_speech_commands --data PATH/arabic_speech_commands --model PATH_OR_random:SIZE \\
        [--split official|grouped] [--folds 5] [--probe logreg-cv] [--baselines logmel,random]

``official`` (the default) trains on ``train.csv`` and tests on ``val.csv`` (``test.csv`` when the release's
test list is present, with ``val.csv`` then the probe's validation set); ``grouped`` pools every listed clip into
``--folds`` folds grouped by speaker.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ajepa.evals.datasets import ARABIC_SPLITS, grouped_folds, read_arabic_speech_commands
from ajepa.evals.probes import Split, splits_from_folds
from ajepa.evals.report import Task, add_common_arguments, cli_main, run_task

LAYOUT = "dataset/{keyword}/{speaker}_NO_{nn}.ogg|wav with train.csv and val.csv (file,class)"


def looks_ok(root: Path) -> bool:
    """Whether ``root`` has the Arabic Speech Commands layout (a split list and the ``dataset/`` folder)."""
    root = Path(root)
    return (root / "dataset").is_dir() and any((root / name).is_file() for name in ARABIC_SPLITS.values())


def load_task(root: str | Path, *, split: str = "official", seed: int = 0, folds: int = 5) -> Task:
    """The data set with its protocol: train -> test (``val.csv`` when the test list is absent), or grouped k-fold."""
    clips = read_arabic_speech_commands(root).without_unreadable()
    s = clips.split
    if split == "grouped":
        splits = splits_from_folds(grouped_folds(clips.labels, clips.groups, folds, seed))
        return Task(clips.name, clips, splits, f"{folds}-fold CV grouped by speaker")
    if split != "official":
        raise ValueError(f"split must be 'official' or 'grouped', got {split!r}")
    train = np.flatnonzero(s == "train")
    if "test" in set(s):
        test, val = np.flatnonzero(s == "test"), np.flatnonzero(s == "validation")
        protocol = "train -> test (official lists; validation list for the probe's model selection)"
    else:
        test, val = np.flatnonzero(s == "validation"), np.array([], dtype=np.int64)
        protocol = "train -> val (official lists, speaker-disjoint)"
    if not len(train) or not len(test):
        raise ValueError(f"{root}: the official protocol needs train.csv and val.csv (or test.csv); "
                         "use --split grouped for a single list")
    return Task(clips.name, clips, [Split("official", train, test, val if len(val) else None)], protocol)


def build_parser() -> argparse.ArgumentParser:
    """The ``ajepa.evals.arabic_speech_commands`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.arabic_speech_commands", description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--split", choices=("official", "grouped"), default="official",
                   help="the data set's lists (train -> val, default) or speaker-grouped k-fold")
    return p


def run(args: argparse.Namespace, **run_kwargs) -> list:
    """Read the data, run the probes, write the report."""
    from ajepa.evals.report import DataNotFound

    root = Path(args.data).expanduser() if args.data else None
    if root is None or not looks_ok(root):
        extra = " --download is not available for this data set." if args.download else ""
        raise DataNotFound(f"{root if root else 'no --data given'}: expected the layout {LAYOUT} "
                           f"(the data set's release, unpacked).{extra}")
    return run_task(args, load_task(root, split=args.split, seed=args.seed, folds=args.folds), **run_kwargs)


def main(argv: Sequence[str] | None = None, **run_kwargs) -> int:
    """CLI entry point; ``run_kwargs`` go to :func:`ajepa.evals.report.run_task`."""
    return cli_main(build_parser(), argv, lambda a: run(a, **run_kwargs))


if __name__ == "__main__":
    sys.exit(main())
