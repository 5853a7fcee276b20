"""Throughput of one full Audio-JEPA training step (forward, backward, AdamW step, EMA update) on CPU.

Reports clips/s and the achieved model FLOP/s as a fraction of this machine's fp32 matmul peak, which is
measured in the same run (best of several large ``torch.matmul``). FLOPs are real counts from
``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward; during that counting pass only,
timm's attention runs unfused so that its matmuls are counted too (the flop counter does not know the
CPU flash-attention kernel). The target encoder runs forward only, so it contributes forward FLOPs only.

    .venv/bin/python bench/train_step.py                    # mini, tiny, small at 2 s and 5.12 s crops
    .venv/bin/python bench/train_step.py --sizes tiny --grids 8x32 --steps 3 --warmup 1
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from ajepa.models import ENCODER_SIZES, PredictorConfig
from ajepa.training.model import AudioJEPA
from ajepa.objectives import ObjectiveConfig

# A predictor no wider than its encoder; tiny and small follow the I-JEPA reference (6 x 192).
PREDICTORS = {
    "mini": PredictorConfig(embed_dim=128, depth=4, num_heads=4),
    "tiny": PredictorConfig(embed_dim=192, depth=6, num_heads=6),
    "small": PredictorConfig(embed_dim=192, depth=6, num_heads=6),
    "base": PredictorConfig(embed_dim=384, depth=6, num_heads=12),
}
REFERENCE = ("tiny", (8, 32))  # I-JEPA reference recipe: tiny, 6x192 predictor, 4 targets, batch 32


@dataclass
class Row:
    label: str
    size: str
    grid: tuple[int, int]
    joint: bool
    ms_per_step: float
    clips_per_s: float
    gflop_per_step: float
    mean_ctx: float
    mean_tgt: float

    def achieved(self) -> float:
        return self.gflop_per_step * 1e9 / (self.ms_per_step / 1e3)


def matmul_peak(sizes: tuple[int, ...] = (1024, 2048), repeats: int = 5) -> float:
    """Best fp32 FLOP/s of square ``torch.matmul`` over ``sizes`` and ``repeats``: this machine's practical peak."""
    best_rate = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.matmul(a, b)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            best_rate = max(best_rate, 2 * n**3 / (time.perf_counter() - start))
    return best_rate


def make_masks(grid: tuple[int, int], batch: int, count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` (context_idx, target_idx) pairs with 4 targets.

    Uses ajepa.masking's multiblock masker when importable; otherwise a random equivalent: 4 disjoint random
    target sets of 17.5% of the grid each and a context of 92.5% of the grid minus the targets.
    """
    gen = torch.Generator().manual_seed(seed)
    try:
        from ajepa.masking import MaskingConfig, TimeFrequencyBlockMasker
    except ImportError:
        masker = None
    else:
        masker = TimeFrequencyBlockMasker(MaskingConfig(num_targets=4), grid)
    out = []
    n = grid[0] * grid[1]
    for _ in range(count):
        if masker is not None:
            m = masker(batch, gen)
            out.append((m.context_idx, m.target_idx))
            continue
        n_tgt = max(1, round(0.175 * n))
        n_ctx = max(1, round(0.925 * n) - 4 * n_tgt)
        perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(batch)])
        tgt = perms[:, : 4 * n_tgt].reshape(batch, 4, n_tgt).sort(-1).values
        ctx = perms[:, 4 * n_tgt: 4 * n_tgt + n_ctx].sort(-1).values
        out.append((ctx, tgt))
    return out


def count_flops(model: AudioJEPA, tokens: torch.Tensor, grid, ctx, tgt) -> int:
    attns = [m for m in model.modules() if hasattr(m, "fused_attn")]
    for a in attns:
        a.fused_attn = False
    try:
        with FlopCounterMode(display=False) as counter:
            model(tokens, grid, ctx, tgt)["loss"].backward()
    finally:
        for a in attns:
            a.fused_attn = True
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench(size: str, grid: tuple[int, int], joint: bool, batch: int, steps: int, warmup: int, label: str) -> Row:
    torch.manual_seed(0)  # benchmark-local; the library itself never seeds
    enc = ENCODER_SIZES[size]
    model = AudioJEPA(replace(enc), replace(PREDICTORS[size], joint_targets=joint), ObjectiveConfig()).train()
    opt = torch.optim.AdamW(model.param_groups(0.05), lr=1e-4)
    tokens = torch.randn(batch, grid[0] * grid[1], enc.patch_dim)
    masks = make_masks(grid, batch, count=min(steps, 4), seed=1)
    flops = [count_flops(model, tokens, grid, c, t) for c, t in masks]

    def step(i: int) -> None:
        ctx, tgt = masks[i % len(masks)]
        loss = model(tokens, grid, ctx, tgt)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.update_target(0.996)

    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    elapsed = time.perf_counter() - start
    total_flops = sum(flops[i % len(masks)] for i in range(steps))
    return Row(label, size, grid, joint, 1e3 * elapsed / steps, batch * steps / elapsed, total_flops / steps / 1e9,
               sum(c.shape[1] for c, _ in masks) / len(masks),
               sum(t.shape[1] * t.shape[2] for _, t in masks) / len(masks))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}; {os.cpu_count()} logical CPUs; torch {torch.__version__} using {torch.get_num_threads()} "
            f"thread(s); {platform.system()} {platform.release()}; Python {platform.python_version()}")


def parse_grid(text: str) -> tuple[int, int]:
    f, t = text.lower().split("x")
    return int(f), int(t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="mini,tiny,small", help="comma-separated encoder sizes")
    p.add_argument("--grids", default="8x12,8x32", help="patch grids F_pxT_p (8x12 = 2 s, 8x32 = 5.12 s)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--no-reference", action="store_true", help="skip the I-JEPA reference rows")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    peak = matmul_peak()
    jobs = [(s, parse_grid(g), True, "") for s in args.sizes.split(",") for g in args.grids.split(",")]
    if not args.no_reference:
        jobs = [j for j in jobs if (j[0], j[1]) != REFERENCE]
        jobs += [(*REFERENCE, True, "I-JEPA ref (joint)"), (*REFERENCE, False, "I-JEPA ref (separate)")]
    rows = []
    for size, grid, joint, label in jobs:
        rows.append(bench(size, grid, joint, args.batch, args.steps, args.warmup, label))
        r = rows[-1]
        print(f"# done {size} {grid} joint={joint}: {r.clips_per_s:.2f} clips/s", flush=True)
    # Measured again at the end: on a shared machine the larger of the two is the better estimate.
    peak = max(peak, matmul_peak())

    print(f"\nMachine: {machine()}")
    print(f"fp32 matmul peak (1024^3 and 2048^3, best of 2 x 5 each): {peak / 1e9:.1f} GFLOP/s; batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup} warm-up\n")
    print("| row | size | grid | predictor | targets | ctx / tgt tokens | ms/step | clips/s | GFLOP/step "
          "| GFLOP/s | % peak |")
    print("|---|---|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        pc = PREDICTORS[r.size]
        print(f"| {r.label or '-'} | {r.size} | {r.grid[0]}x{r.grid[1]} | {pc.depth}x{pc.embed_dim} | "
              f"{'joint' if r.joint else 'separate'} | {r.mean_ctx:.0f} / {r.mean_tgt:.0f} | {r.ms_per_step:.0f} | "
              f"{r.clips_per_s:.2f} | {r.gflop_per_step:.1f} | {r.achieved() / 1e9:.1f} | "
              f"{100 * r.achieved() / peak:.0f}% |")
    if any(r.achieved() > peak for r in rows):
        print("\nA row above 100% of peak means the machine was busy while the peak was timed: rerun on a quiet one.")


if __name__ == "__main__":
    main()
