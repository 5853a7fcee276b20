"""Training throughput from 1 to N processes (DDP, gloo on CPU) at the same global batch.

Each configuration is a real ``python -m ajepa.train`` run (synthetic data, so no disk I/O differences) with
``cpu_threads`` set so that processes x threads = the cores given; throughput is the median of the logged
``clips_per_s`` after the first logging window (which includes start-up and warm-up).

    .venv/bin/python bench/ddp_scaling.py                       # 1 vs 2 processes, mini model, 2 s clips
    .venv/bin/python bench/ddp_scaling.py --model tiny --steps 40 --procs 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch


def run(procs: int, cores: int, args: argparse.Namespace, out: Path) -> float:
    """One training run with ``procs`` processes; returns the median clips/s over the logged windows."""
    threads = max(1, cores // procs)
    overrides = [
        f"model={args.model}", f"data.clip_seconds={args.clip_seconds}", f"data.batch_size={args.global_batch // procs}",
        f"trainer.max_steps={args.steps}", "trainer.log_every=5", "trainer.checkpoint_every=100000",
        "trainer.progress=false", "trainer.plots=false", "trainer.tensorboard=false", "data.num_workers=0",
        f"trainer.cpu_threads={threads}", f"hydra.run.dir={out}",
    ]
    if procs == 1:
        cmd = [sys.executable, "-m", "ajepa.train", *overrides]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "ajepa.train", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rates = [json.loads(line)["clips_per_s"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mini")
    parser.add_argument("--clip-seconds", type=float, default=2.0)
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for procs in [int(p) for p in args.procs.split(",")]:
            rate = run(procs, args.cores, args, Path(tmp) / f"p{procs}")
            rows.append((procs, max(1, args.cores // procs), rate))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    print(f"Machine: {cpu}; {args.cores} cores; torch {torch.__version__}; load average {os.getloadavg()[0]:.1f}")
    print(f"{args.model} model, {args.clip_seconds} s clips, global batch {args.global_batch}, {args.steps} steps, "
          "synthetic data, gloo\n")
    print("| processes | threads each | clips/s (median) | vs 1 process |")
    print("|---:|---:|---:|---:|")
    base = rows[0][2]
    for procs, threads, rate in rows:
        print(f"| {procs} | {threads} | {rate:.1f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
