"""Write a labelled manifest (``path,label,group`` CSV) of an evaluation task, for the trainer's transfer probe.

    python -m ajepa.evals.manifest --task esc50 --data-root ../shared/data --out runs/probe_esc50.csv
    python -m ajepa.train ... holdout=esc trainer.probe.manifest=runs/probe_esc50.csv

The task is read with the suite's readers, so its labels and groups (speaker, source recording) are the ones the
probes use. Paths are written absolute. Probe a corpus the run leaves out (``holdout=``): a probe on the
training audio measures fit, not transfer.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from ajepa.io import atomic_write
from ajepa.evals.datasets import ClipSet

__all__ = ["main", "write_manifest"]


def write_manifest(clips: ClipSet, out: str | Path) -> Path:
    """Write ``clips`` as a ``path,label,group`` CSV (labels by class name), atomically; returns the path."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "group"])
            for path, label, group in zip(clips.paths, clips.labels, clips.groups):
                writer.writerow([str(Path(path).resolve()), clips.class_names[int(label)], str(group)])

    return atomic_write(out, write)


def main(argv: Sequence[str] | None = None) -> int:
    """Read the task and write its manifest."""
    from ajepa.evals.suite import TASKS, DataNotFound, load_tasks

    p = argparse.ArgumentParser(prog="python -m ajepa.evals.manifest", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--data-root", required=True, help="folder holding the task's data set (as for evals.suite)")
    p.add_argument("--out", required=True, help="the CSV to write")
    args = p.parse_args(argv)
    try:
        (_, task), = load_tasks([args.task], args.data_root, seed=0, folds=5).values()
    except DataNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = write_manifest(task.clips, args.out)
    print(f"{out}: {len(task.clips)} clips, {len(task.clips.class_names)} labels, "
          f"{len(set(task.clips.groups))} groups")
    return 0


if __name__ == "__main__":
    sys.exit(main())
