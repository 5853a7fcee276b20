"""Real-time factor and peak memory of ``Embedder.embed`` on 10 s clips (random weights).

Each (size, batch) configuration runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is its own
and not the high-water mark of an earlier, larger configuration. The table reports:

- ``RTF``: seconds of audio embedded per second of wall time, median (and best) over repeats, higher is better,
  for the whole path the user calls: numpy input -> log-mel -> windows -> encoder -> pooled float32 numpy.
  On a shared machine the best repeat is the closer estimate of what the code can do; the median of what you get;
- ``GFLOP/clip`` (analytic encoder FLOPs) and the best repeat's achieved GFLOP/s, to compare with the
  machine's fp32 matmul peak printed above the table;
- ``peak RSS``: the worker's maximum resident set size (Python + torch + model + activations);
- ``+embed``: how much that peak grew during embedding, over the RSS measured after the model was built
  and one warm-up clip was embedded (the cost of the batch itself);
- ``GPU peak``: ``torch.cuda.max_memory_allocated`` when running on CUDA.

    .venv/bin/python bench/embed.py                                   # mini/tiny/small/base x batch 1, 32
    .venv/bin/python bench/embed.py --sizes small --batches 32 --repeats 5
    .venv/bin/python bench/embed.py --device cuda --bf16         # --bf16 also helps CPUs with AMX

The model window (``--clip-seconds``, default 10) equals the clip length, so each clip is one encoder window
(8 x 63 = 504 tokens). Models trained on shorter crops cut 10 s into half-overlapping windows, which costs up to
2x the encoder work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

SR = 16000


def _rss_mb() -> float:
    # Current (not peak) resident set, from /proc where available; peak is ru_maxrss.
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def _maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def worker(args: argparse.Namespace) -> dict:
    """Measure one configuration in this process and return the result row."""
    import numpy as np
    import torch

    from ajepa.inference import Embedder
    from ajepa.models import ENCODER_SIZES

    emb = Embedder.from_config(ENCODER_SIZES[args.size], clip_seconds=args.clip_seconds, seed=0,
                               device=args.device)
    emb.bf16 = args.bf16
    rng = np.random.default_rng(0)
    n = int(args.seconds * SR)
    audio = (0.1 * rng.standard_normal((args.batch, n))).astype(np.float32)
    on_cuda = emb.device.type == "cuda"

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    # The first few CPU forwards are several times slower (oneDNN primitive creation, allocator growth), and
    # kernels are chosen per shape: warm up on one clip a few times, then once at the measured batch.
    for _ in range(3):
        emb.embed(audio[0], SR, batch_size=1)
    if args.batch > 1:
        emb.embed(audio, SR, batch_size=args.batch)
    sync()
    rss_idle = _rss_mb()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        emb.embed(audio, SR, batch_size=args.batch)
        sync()
        times.append(time.perf_counter() - start)
    wall = statistics.median(times)
    # Analytic model FLOPs (multiply-add = 2): token-wise linear layers plus attention scores and mixing.
    cfg = emb.encoder_config
    f_p, t_p = emb.window_grid
    tokens = f_p * t_p
    per_block = (4 + 2 * cfg.mlp_ratio) * cfg.embed_dim**2
    flops_window = 2 * tokens * (cfg.patch_dim * cfg.embed_dim + cfg.depth * per_block) \
        + cfg.depth * 4 * tokens**2 * cfg.embed_dim
    gflop_clip = flops_window * emb.num_windows(n) / 1e9
    peak = _maxrss_mb()
    return {
        "size": args.size, "batch": args.batch, "device": str(emb.device),
        "bf16": args.bf16 and emb.device.type in ("cuda", "cpu"),
        "params_m": sum(p.numel() for p in emb.encoder.parameters()) / 1e6,
        "rtf": args.batch * args.seconds / wall, "rtf_best": args.batch * args.seconds / min(times),
        "ms_per_clip": wall / args.batch * 1e3, "gflop_clip": gflop_clip,
        "gflops": gflop_clip * args.batch / min(times),
        "peak_rss_mb": peak, "embed_rss_mb": max(0.0, peak - rss_idle),
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if on_cuda else None,
        "threads": torch.get_num_threads(),
    }


def machine(device: str | None) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    desc = (f"{cpu}; {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} intra-op threads), Python {platform.python_version()}, {platform.system()}")
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(6):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    desc += f"; fp32 matmul peak {2 * 1024**3 / best / 1e9:.0f} GFLOP/s (CPU, best of 6)"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    desc += f"; 1-min load average at start {load:.1f}"
    if torch.cuda.is_available() and device != "cpu":
        desc += f"; GPU {torch.cuda.get_device_name()}"
    return desc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="mini,tiny,small,base")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10 s)")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="model window length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="default: best available (cuda > mps > cpu)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA or CPU)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    print(f"Machine: {machine(args.device)}\n")
    print(f"Clips of {args.seconds:g} s, model window {args.clip_seconds:g} s, median of {args.repeats} repeat(s), "
          f"random weights.\n")
    print("| size | params | batch | device | RTF median (best) | ms / clip | GFLOP/clip | GFLOP/s | peak RSS | +embed "
          "| GPU peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            cmd = [sys.executable, __file__, "--worker", "--size", size, "--batch", str(batch),
                   "--seconds", str(args.seconds), "--clip-seconds", str(args.clip_seconds),
                   "--repeats", str(args.repeats)] + (["--device", args.device] if args.device else []) \
                + (["--bf16"] if args.bf16 else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"| {size} | | {batch} | failed: {proc.stderr.strip().splitlines()[-1:]} | | | | | | | |")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            gpu = f"{r['gpu_peak_mb']:.0f} MiB" if r["gpu_peak_mb"] is not None else "-"
            dev = r["device"] + (" bf16" if r["bf16"] else "")
            print(f"| {size} | {r['params_m']:.1f} M | {batch} | {dev} | {r['rtf']:.0f} ({r['rtf_best']:.0f}) | "
                  f"{r['ms_per_clip']:.1f} | {r['gflop_clip']:.1f} | {r['gflops']:.0f} | "
                  f"{r['peak_rss_mb']:.0f} MiB | {r['embed_rss_mb']:.0f} MiB | {gpu} |", flush=True)


if __name__ == "__main__":
    main()
