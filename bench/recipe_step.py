"""The shipped recipe's training step as it really runs: the ``cpu15`` preset on real audio, data loading included.

``bench/train_step.py`` times the model on random tokens; this times what a user waits for: the loader (decode,
crop, gain, masks), the log-mel front end, forward, backward, AdamW and the EMA update, at the recipe's own
shapes. It compares loader set-ups side by side (configurations interleaved, same seed, the same batches), checks
that they give the same losses, and prints a ``torch.profiler`` table of where the fastest one's step goes.

    .venv/bin/python bench/recipe_step.py --data ../shared/data            # ~5 minutes on 2 cores
    .venv/bin/python bench/recipe_step.py --data ../shared/data --steps 30 --rounds 1 --no-profile
    .venv/bin/python bench/recipe_step.py --data ../shared/data --compile --no-profile   # + a torch.compile row

A cached configuration reads every item once before it is timed (the cache is then warm, as it is for all but
the first of the recipe's ~7 passes over the corpus); that pass is reported on its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import torch

from ajepa.training import distributed as D
from ajepa.training import loop as T
from ajepa.training.loader import build_dataset, build_loader
from ajepa.training.optim import build_optimizer, hyperparams_at
from ajepa.features.audio import clip_samples
from ajepa.runtime import cpu_thread_count, maybe_compile
from ajepa.train import compose_config
from ajepa.training.state import TrainState

RECIPE = "main-process loading + memory cache (the recipe)"
# label -> overrides on `experiment=cpu15`
SETUPS = {
    "1 loader worker (r2's set-up)": ["data.num_workers=1", "data.cache_mb=0"],
    "main-process loading": ["data.num_workers=0", "data.cache_mb=0"],
    RECIPE: ["data.num_workers=0", "data.cache_mb=2048"],
}


@dataclass
class Setup:
    label: str
    cfg: object
    threads: int
    iterator: object
    state: TrainState
    tokenizer: object
    fill_seconds: float = 0.0
    warmup_seconds: float = 0.0


def build(label: str, overrides: list[str], data: str, compile_model: bool = False) -> Setup:
    cfg = compose_config(["experiment=cpu15", f"data.root={data}", *overrides])
    threads = cpu_thread_count(cfg.trainer.cpu_threads, cfg.data.num_workers, 1)
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    tokenizer = T.build_tokenizer(cfg, device)
    grid = tokenizer.grid(clip_samples(cfg.data.clip_seconds, cfg.frontend.sample_rate))
    model = T.build_model(cfg, device).train()
    # inductor with dynamic shapes, as `trainer.compile=true` does (the masks change the sizes every batch)
    forward = maybe_compile(model, compile_model)
    state = TrainState(model=model, optimizer=build_optimizer(model, cfg.optim, device), forward=forward)
    dataset = build_dataset(cfg.data, cfg.frontend.sample_rate, cfg.seed)
    fill = 0.0
    if cfg.data.cache_mb:
        start = time.perf_counter()
        for index in range(len(dataset)):
            dataset[index]
        fill = time.perf_counter() - start
    loader, _ = build_loader(cfg, dataset, grid, D.DistInfo(), start_batch=0)
    return Setup(label, cfg, threads, iter(loader), state, tokenizer, fill)


def run_steps(s: Setup, count: int) -> tuple[float, list[float]]:
    """Wall seconds of ``count`` steps (the next batch included) and their losses."""
    torch.set_num_threads(s.threads)
    losses = []
    start = time.perf_counter()
    for _ in range(count):
        batch = next(s.iterator)
        hp = hyperparams_at(s.state.step, s.cfg.optim, s.cfg.trainer.max_steps)
        torch.manual_seed(T.step_seed(s.cfg.seed, 0, s.state.step))
        out = T.train_step(s.state, [batch], hp, s.tokenizer, None, s.cfg.optim.grad_clip, s.cfg.objective.ignore_padding)
        losses.append(float(out.loss))
    return time.perf_counter() - start, losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--steps", type=int, default=60, help="timed steps per configuration and round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="add the recipe with torch.compile (inductor; its warm-up includes the compilation)")
    args = p.parse_args()

    from train_step import machine  # bench/ is the script's directory, so its siblings import

    setups = [build(label, overrides, args.data) for label, overrides in SETUPS.items()]
    if args.compile:
        setups.append(build("the recipe + torch.compile (inductor, dynamic shapes)", SETUPS[RECIPE], args.data,
                            compile_model=True))
    batch = setups[0].cfg.data.batch_size
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {s.label: [] for s in setups}
    losses: dict[str, list[float]] = {s.label: [] for s in setups}
    for s in setups:
        s.warmup_seconds, warm = run_steps(s, args.warmup)
        losses[s.label] += warm
    for _ in range(args.rounds):
        for s in setups:
            seconds, got = run_steps(s, args.steps)
            times[s.label].append(seconds / args.steps)
            losses[s.label] += got
    print(f"Recipe `cpu15` ({setups[0].cfg.model.name}, batch {batch}, {setups[0].cfg.data.clip_seconds} s crops) "
          f"on {args.data}; {args.rounds} interleaved round(s) of {args.steps} steps after {args.warmup} warm-up.")
    print(f"Machine: {machine()}; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}.\n")
    base = statistics.median(times[setups[0].label])
    print("| set-up | step threads | ms / step (median of rounds) | clips/s | vs first row | max loss diff vs first row |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in setups:
        ms = statistics.median(times[s.label])
        diff = max(abs(a - b) for a, b in zip(losses[s.label], losses[setups[0].label]))
        print(f"| {s.label} | {s.threads} | {1e3 * ms:.0f} | {batch / ms:.0f} | {base / ms:.2f}x | {diff:.1e} |")
    for s in setups:
        if s.fill_seconds:
            print(f"\n{s.label}: filling the cache (one read of all {len(s.iterator._dataset)} items) took "
                  f"{s.fill_seconds:.0f} s.")
    if args.compile:
        eager = next(s for s in setups if s.label == RECIPE)
        compiled = setups[-1]
        saved = statistics.median(times[eager.label]) - statistics.median(times[compiled.label])
        extra = compiled.warmup_seconds - eager.warmup_seconds
        verdict = (f"it pays back after {extra / saved:.0f} steps (the recipe runs {eager.cfg.trainer.max_steps})"
                   if saved > 0 else "it never pays back: the compiled step is not faster")
        print(f"\ntorch.compile: the {args.warmup} warm-up steps took {compiled.warmup_seconds:.0f} s compiled against "
              f"{eager.warmup_seconds:.1f} s eager (compilation included); {verdict}.")
    if not args.no_profile:
        from torch.profiler import ProfilerActivity, profile

        best = next(s for s in setups if s.label == RECIPE)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run_steps(best, 10)
        print(f"\nProfile of 10 steps, {best.label} (self CPU time):\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
