"""Step time of the pretraining designs side by side: the same model step (masks, target pass, context encoder on
every masked copy, predictor, backward, AdamW, EMA) for each set of config overrides, interleaved in one run.

Budgets "at equal CPU-minutes" (docs/RESULTS.md) convert minutes to steps with these ratios. The tokens are random
(the front end and loader cost the same for every design; ``bench/recipe_step.py`` times them).

    .venv/bin/python bench/objective_step.py                       # the recipe against the multi-mask designs
    .venv/bin/python bench/objective_step.py --design "mm8=experiment=multimask" --design "c16=experiment=multimask masking.copies=16"
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ajepa.features.audio import clip_samples
from ajepa.masking import MaskCollator
from ajepa.train import compose_config
from ajepa.training.loop import build_model, build_tokenizer
from ajepa.training.optim import build_optimizer

DESIGNS = {
    "cpu15 (I-JEPA multi-block)": "experiment=cpu15",
    "multimask (8 copies, inverse 2x2, keep 0.25, 2 x 64 predictor)": "experiment=multimask",
    "multimask, 4 x 128 predictor": "experiment=multimask model.predictor.depth=4 model.predictor.embed_dim=128",
    "multimask, 4 copies": "experiment=multimask masking.copies=4",
    "multimask, 16 copies": "experiment=multimask masking.copies=16",
    "multimask, 2 s crops": "experiment=multimask data.clip_seconds=2.0",
}


def build(overrides: str):
    """Model, optimiser, grid and mask collator of one design (on the CPU, its own seed)."""
    cfg = compose_config(["data.root=.", *overrides.split()])
    model = build_model(cfg, torch.device("cpu"))
    grid = build_tokenizer(cfg, torch.device("cpu")).grid(clip_samples(cfg.data.clip_seconds, cfg.frontend.sample_rate))
    return cfg, model, build_optimizer(model, cfg.optim, torch.device("cpu")), grid, MaskCollator(cfg.masking, grid, 0)


def time_steps(design, steps: int, start: int) -> float:
    """Seconds per step over ``steps`` steps."""
    cfg, model, optimizer, grid, collator = design
    b = cfg.data.batch_size
    gen = torch.Generator().manual_seed(start)
    tokens = torch.randn(b, grid[0] * grid[1], cfg.model.encoder.patch_dim, generator=gen)
    t0 = time.perf_counter()
    for i in range(steps):
        masks = collator.masks(b, start + i)
        out = model(tokens, grid, masks.context_idx, masks.target_idx)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_target(0.996)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--design", action="append", default=[], metavar="LABEL=OVERRIDES",
                   help="a design: a label, '=', then space-separated overrides (default: the built-in list)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    from train_step import machine  # bench/ is the script's directory

    designs = dict(d.split("=", 1) for d in args.design) if args.design else DESIGNS
    torch.set_num_threads(2)
    built = {label: build(overrides) for label, overrides in designs.items()}
    times: dict[str, list[float]] = {label: [] for label in built}
    for label, design in built.items():
        time_steps(design, 3, 0)  # warm-up
    for r in range(args.rounds):
        for label, design in built.items():
            times[label].append(time_steps(design, args.steps, 1000 * (r + 1)))
    print(f"Machine: {machine()}; {args.rounds} interleaved rounds of {args.steps} steps, batch of clips as "
          "configured, random tokens.\n")
    base = statistics.median(next(iter(times.values())))
    print("| design | overrides | grid | ms / step | vs first row |")
    print("|---|---|---|---:|---:|")
    for label, design in built.items():
        ms = statistics.median(times[label])
        print(f"| {label} | `{designs[label]}` | {design[3][0]}x{design[3][1]} | {1e3 * ms:.0f} | {ms / base:.2f}x |")


if __name__ == "__main__":
    main()
