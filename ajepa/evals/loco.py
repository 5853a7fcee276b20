"""Reproduce the leave-one-corpus-out table of docs/RESULTS.md with one command.

    python -m ajepa.evals.loco --data-root ../shared/data             # or: make loco
    python -m ajepa.evals.loco --data-root ../shared/data --dry-run   # print the commands, run nothing

For every holdout and seed it pretrains the recipe with each objective (``python -m ajepa.train
experiment=cpu15 holdout=<h> objective=<o> seed=<s>``) into ``runs/loco_<h>_s<s>`` (JEPA) and
``runs/loco_mae_<h>_s<s>`` (MAE), then runs one ``ajepa.evals.suite`` over the held-out tasks: JEPA, MAE, random
encoders of the same shape and log-mel statistics, each task read out by the encoders that never saw it, with
the strong probe (``logreg-cv``) and the read-out best for the trained and the random encoders alike
(``freqcat+std`` of all layers). Training runs with ``resume=auto``, so the command can be run again after an
interruption: finished runs are not retrained and a stopped one continues from its last checkpoint.

The full table (4 holdouts x 2 objectives x 2 seeds = 16 runs, then the suite) took 80 minutes
on 2 cores of an Intel Xeon with AMX (runs of about 4 minutes; about 6 on the AMD EPYC of docs/RESULTS.md); ``--holdouts`` and ``--seeds`` cut it down.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ajepa.objectives.config import OBJECTIVES

__all__ = ["DEFAULT_OBJECTIVES", "HOLDOUT_TASKS", "OBJECTIVES", "run_dir", "plan", "run_plan", "main"]

# Each holdout config (configs/holdout/<name>.yaml) and the task of the table it is evaluated on.
HOLDOUT_TASKS: dict[str, str] = {
    "esc": "esc50",
    "speech_commands": "speech_commands",
    "arabic_speech_commands": "arabic_speech_commands",
    "fsdd": "fsdd",
}
# The objectives compared by default; any of ajepa.objectives.OBJECTIVES may be named.
DEFAULT_OBJECTIVES: tuple[str, ...] = ("jepa", "mae")
CHECKPOINT = "checkpoints/last.pt"


def run_dir(runs: str | Path, objective: str, holdout: str, seed: int) -> Path:
    """The run folder of one pretraining: ``loco_<holdout>_s<seed>`` for JEPA, ``loco_<objective>_...`` else."""
    prefix = "loco" if objective == "jepa" else f"loco_{objective}"
    return Path(runs) / f"{prefix}_{holdout}_s{seed}"


def _members(runs: str | Path, objective: str, seeds: Sequence[int]) -> str:
    # "{holdout}" is filled in per task by evals.suite, so one method covers every task with its own holdout.
    return ",".join(f"{run_dir(runs, objective, '{holdout}', s)}/{CHECKPOINT}" for s in seeds)


def plan(data_root: str, *, holdouts: Sequence[str] = tuple(HOLDOUT_TASKS), seeds: Sequence[int] = (0, 1),
         objectives: Sequence[str] = DEFAULT_OBJECTIVES, random_seeds: Sequence[int] = (0, 1), runs: str = "runs",
         out: str = "reports/loco", experiment: str = "cpu15", probe: str = "logreg-cv",
         train_overrides: Sequence[str] = (), python: str = sys.executable) -> list[list[str]]:
    """Every command of the table, in order: the pretraining runs, then one ``ajepa.evals.suite``.

    The random baseline's shape comes from the first pretraining run (every run has the recipe's encoder).
    """
    bad = [h for h in holdouts if h not in HOLDOUT_TASKS]
    if bad:
        raise ValueError(f"unknown holdout {bad[0]!r}; choose from {', '.join(HOLDOUT_TASKS)}")
    bad = [o for o in objectives if o not in OBJECTIVES]
    if bad:
        raise ValueError(f"unknown objective {bad[0]!r}; choose from {', '.join(OBJECTIVES)}")
    if not holdouts or not seeds or not objectives:
        raise ValueError("need at least one holdout, one seed and one objective")
    if len(set(seeds)) != len(seeds) or len(set(random_seeds)) != len(random_seeds):
        raise ValueError("a seed is listed twice (it would count as two seeds)")

    commands = []
    for holdout in holdouts:
        for objective in objectives:
            for seed in seeds:
                commands.append([
                    python, "-m", "ajepa.train", f"experiment={experiment}", f"holdout={holdout}",
                    f"objective={objective}", f"data.root={data_root}", f"seed={seed}", "resume=auto",
                    *train_overrides, f"hydra.run.dir={run_dir(runs, objective, holdout, seed)}"])
    shape = f"{run_dir(runs, objectives[0], holdouts[0], seeds[0])}/{CHECKPOINT}"
    suite = [python, "-m", "ajepa.evals.suite", "--data-root", data_root,
             "--tasks", ",".join(HOLDOUT_TASKS[h] for h in holdouts)]
    for objective in objectives:
        suite += ["--method", f"{objective}={_members(runs, objective, seeds)}"]
    if random_seeds:
        suite += ["--method", "random=" + ",".join(f"random:{shape}:{s}" for s in random_seeds)]
    suite += ["--method", "logmel=logmel", "--probe", probe, "--pooling", "freqcat+std",
              "--average-layers", "all", "--seed", "0", "--out", out]
    return commands + [suite]


def run_plan(commands: Sequence[Sequence[str]],
             runner: Callable[[Sequence[str]], int] = lambda c: subprocess.run(list(c)).returncode) -> int:
    """Run the commands in order; stop at the first that fails and return its exit status (0 when all pass)."""
    for i, command in enumerate(commands, 1):
        print(f"[{i}/{len(commands)}] {shlex.join(command)}", flush=True)
        code = runner(command)
        if code != 0:
            print(f"error: command {i} of {len(commands)} failed with exit status {code}; "
                  "run the same evals.loco command again to continue from there", file=sys.stderr)
            return code
    return 0


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _objectives(text: str) -> list[str]:
    names = _names(text)
    bad = [n for n in names if n not in OBJECTIVES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown objective {bad[0]!r}; choose from {', '.join(OBJECTIVES)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    """Build the plan from the arguments, then print it (``--dry-run``) or run it."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.loco", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="the shared corpus (pretraining) and the tasks' data")
    p.add_argument("--holdouts", type=_names, default=list(HOLDOUT_TASKS),
                   help=f"comma-separated holdout configs (default all: {','.join(HOLDOUT_TASKS)})")
    p.add_argument("--seeds", type=_ints, default=[0, 1], help="pretraining seeds (default 0,1)")
    p.add_argument("--objectives", type=_objectives, default=list(DEFAULT_OBJECTIVES),
                   help=f"comma-separated, of {','.join(OBJECTIVES)} (default {','.join(DEFAULT_OBJECTIVES)})")
    p.add_argument("--random-seeds", type=_ints, default=[0, 1],
                   help="init seeds of the random encoder of the same shape (default 0,1)")
    p.add_argument("--experiment", default="cpu15", help="the recipe, configs/experiment/<name>.yaml (default cpu15)")
    p.add_argument("--train-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra Hydra override for every pretraining run (repeatable)")
    p.add_argument("--runs", default="runs", help="folder of the run folders (default runs)")
    p.add_argument("--out", default="reports/loco", help="the suite's report folder (default reports/loco)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and run nothing")
    args = p.parse_args(argv)
    try:
        commands = plan(args.data_root, holdouts=args.holdouts, seeds=args.seeds, objectives=args.objectives,
                        random_seeds=args.random_seeds, runs=args.runs, out=args.out,
                        experiment=args.experiment, train_overrides=args.train_arg)
    except ValueError as e:
        p.error(str(e))
    if args.dry_run:
        for command in commands:
            print(shlex.join(command))
        return 0
    return run_plan(commands)


if __name__ == "__main__":
    sys.exit(main())
