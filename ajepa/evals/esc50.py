"""ESC-50 / ESC-10 probe: 5-fold leave-one-fold-out over the official folds, mean ± std of accuracy.

    python -m ajepa.evals.esc50 --data PATH/ESC-50-master [--esc10] --model PATH_OR_random:SIZE \\
        [--probe linear,knn] [--baselines logmel,random] [--out DIR] [--seed N] [--cache-dir D]

``--folds`` does not apply: the official folds define the protocol.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ajepa.evals.datasets import read_esc50
from ajepa.evals.probes import splits_from_folds
from ajepa.evals.report import Task, add_common_arguments, cli_main, resolve_data, run_task

LAYOUT = "audio/*.ogg|wav and meta/esc50.csv (the ESC-50 repository folder)"

log = logging.getLogger(__name__)


def looks_ok(root: Path) -> bool:
    """Whether ``root`` has the ESC-50 layout (its metadata file)."""
    return (Path(root) / "meta" / "esc50.csv").is_file()


def load_task(root: str | Path, *, esc10: bool = False) -> Task:
    """ESC-50 (or ESC-10) with its protocol: leave-one-fold-out over the official folds present.

    The official folds are the protocol even where they disagree with the source-file groups: the release puts
    four source recordings (131943, 134049, 209698, 234879) in two folds each, under different classes. Those are
    named in a warning and a report note; the folds are used as they are (no group check across them).
    """
    clips = read_esc50(root, esc10=esc10).without_unreadable()
    splits = splits_from_folds(clips.folds)
    spanning = sorted(g for g in np.unique(clips.groups) if len(np.unique(clips.folds[clips.groups == g])) > 1)
    if spanning:
        shown = ", ".join(spanning[:8]) + (", ..." if len(spanning) > 8 else "")
        msg = f"{len(spanning)} source file(s) lie in more than one official fold ({shown}); the official folds are used"
        log.warning("%s: %s", clips.name, msg)
        clips.notes.append(msg)
    return Task(clips.name, clips, splits, f"{len(splits)}-fold leave-one-fold-out (official folds)",
                check_groups=False)


def build_parser() -> argparse.ArgumentParser:
    """The ``ajepa.evals.esc50`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.esc50", description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--esc10", action="store_true", help="the ESC-10 subset (rows with esc10 == True)")
    return p


def run(args: argparse.Namespace, **run_kwargs) -> list:
    """Read the data, run the probes on the model and baselines, write the report."""
    data = resolve_data(args, "esc50", looks_ok, LAYOUT)
    return run_task(args, load_task(data, esc10=args.esc10), **run_kwargs)


def main(argv: Sequence[str] | None = None, **run_kwargs) -> int:
    """CLI entry point; ``run_kwargs`` go to :func:`ajepa.evals.report.run_task` (tests inject models there)."""
    return cli_main(build_parser(), argv, lambda a: run(a, **run_kwargs))


if __name__ == "__main__":
    sys.exit(main())
