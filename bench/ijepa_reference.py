"""Our training step against the I-JEPA reference training step, side by side in one process.

The reference is facebookresearch/ijepa, which this repo does not contain: fetch it yourself, check it out
anywhere outside this repo, and point ``--ijepa-path`` (or ``IJEPA_PATH``) at the checkout. Its
``src.models.vision_transformer`` (vit_tiny, vit_predictor), ``src.masks.utils.apply_masks``,
``src.utils.tensors.repeat_interleave_batch`` and ``src.masks.multiblock.MaskCollator`` are imported from
there at run time. The reference *training step* itself (their ``train.py`` recipe: target encoder on all
tokens + layer norm -> gather targets; context encoder on the context mask -> predictor; smooth L1; AdamW;
per-parameter EMA) is written out here, not copied.

Recipe (the same for every row): ViT-tiny encoder (12 x 192, 3 heads), 6 x 192 predictor, 4 target blocks,
256 tokens (ours: 8 x 32 grid of 16 x 16 patches = 128 mels x 5.12 s; reference: a 256 x 256 one-channel
image with 16 x 16 patches, i.e. a 16 x 16 grid: their PatchEmbed and sin-cos position table only take
square images, and the token count, patch size and therefore the compute are the same), batch 32, fp32.
Reference predictor heads: their ``init_model`` default (``num_heads=encoder.num_heads`` = 3); ours: 6.

Masks: ``shared`` feeds the reference exactly our mask index sets (the same context and target tokens, so
both do the same work); ``native`` gives the reference its own MaskCollator at its published settings
(enc scale 0.85-1.0, pred scale 0.15-0.2, aspect 0.75-1.5, 1 enc + 4 pred blocks, min_keep 10, no overlap)
on its 16 x 16 grid, whose token counts differ from ours (both are printed).

Timing: every timed step runs each implementation once, in a rotating order, so that load from other jobs
hits all of them alike; the table shows medians, and the ratio column is the median of per-step ratios
(paired), the figure to read on a shared machine. FLOPs: FlopCounterMode over one forward + backward per
mask set (our fused attention is unfused for the count, as in bench/train_step.py; the reference's
attention is plain matmuls anyway). The fp32 matmul peak is measured before and after (the larger is used).

    .venv/bin/python bench/ijepa_reference.py --ijepa-path /tmp/ijepa --steps 6 --warmup 2
    .venv/bin/python bench/ijepa_reference.py --ijepa-path /tmp/ijepa --profile   # + torch.profiler tables
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import PREDICTORS, count_flops, machine, make_masks, matmul_peak  # noqa: E402

from ajepa.models import ENCODER_SIZES  # noqa: E402
from ajepa.training.model import AudioJEPA  # noqa: E402
from ajepa.objectives import ObjectiveConfig  # noqa: E402

GRID = (8, 32)  # ours: 128 mels / 16 x 512 frames / 16
SIDE = 256  # reference: 256 x 256 image, 16 x 16 patches -> 16 x 16 grid, the same 256 tokens
EMA = 0.996


def load_reference(path: str | None) -> SimpleNamespace:
    """Import the reference modules from an ijepa checkout; exit 2 with a message when it is not there."""
    if not path or not (Path(path) / "src" / "models" / "vision_transformer.py").is_file():
        print(f"I-JEPA checkout not found (--ijepa-path / IJEPA_PATH = {path!r}). Get it with\n"
              "  git clone https://github.com/facebookresearch/ijepa /tmp/ijepa\n"
              "and rerun with --ijepa-path /tmp/ijepa (keep it outside this repo).", file=sys.stderr)
        sys.exit(2)
    sys.path.insert(0, str(Path(path).resolve()))
    from src.masks.multiblock import MaskCollator
    from src.masks.utils import apply_masks
    from src.models.vision_transformer import vit_predictor, vit_tiny
    from src.utils.tensors import repeat_interleave_batch
    return SimpleNamespace(vit_tiny=vit_tiny, vit_predictor=vit_predictor, apply_masks=apply_masks,
                           repeat_interleave_batch=repeat_interleave_batch, MaskCollator=MaskCollator)


def optimizer_kwargs(kind: str) -> dict:
    return {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[kind]


@dataclass
class Impl:
    label: str
    step: Callable[[int], None]
    flops: list[int]
    mean_ctx: float
    mean_tgt: float
    forward_loss: Callable[[int], torch.Tensor]
    times: list[float] = field(default_factory=list)


class Reference:
    """The I-JEPA train step (train.py's recipe, fp32, no AMP), on a one-channel 256 x 256 'image'."""

    def __init__(self, ref: SimpleNamespace, batch: int, pred_heads: int, masks: list, optim: str) -> None:
        torch.manual_seed(0)
        self.ref = ref
        self.encoder = ref.vit_tiny(img_size=[SIDE], in_chans=1).train()  # patch_size 16 by default
        self.predictor = ref.vit_predictor(num_patches=self.encoder.patch_embed.num_patches,
                                           embed_dim=self.encoder.embed_dim, predictor_embed_dim=192,
                                           depth=6, num_heads=pred_heads).train()
        self.target = copy.deepcopy(self.encoder).requires_grad_(False)
        # Their init_opt: matrices with weight decay, biases and 1-d tensors without.
        params = [(n, p) for m in (self.encoder, self.predictor) for n, p in m.named_parameters() if p.requires_grad]
        decay = [p for n, p in params if "bias" not in n and p.dim() != 1]
        no_decay = [p for n, p in params if "bias" in n or p.dim() == 1]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.04},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, **optimizer_kwargs(optim))
        self.imgs = torch.randn(batch, 1, SIDE, SIDE)
        self.masks = masks  # [(masks_enc: list of (B, N_ctx), masks_pred: list of (B, N_tgt)), ...]

    def forward_loss(self, i: int) -> torch.Tensor:
        masks_enc, masks_pred = self.masks[i % len(self.masks)]
        with torch.no_grad():
            h = self.target(self.imgs)
            h = F.layer_norm(h, (h.size(-1),))
            b = len(h)
            h = self.ref.apply_masks(h, masks_pred)
            h = self.ref.repeat_interleave_batch(h, b, repeat=len(masks_enc))
        z = self.encoder(self.imgs, masks_enc)
        z = self.predictor(z, masks_enc, masks_pred)
        return F.smooth_l1_loss(z, h)

    def step(self, i: int) -> None:
        loss = self.forward_loss(i)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()
        with torch.no_grad():  # their momentum update, one parameter at a time
            for q, k in zip(self.encoder.parameters(), self.target.parameters()):
                k.data.mul_(EMA).add_((1.0 - EMA) * q.detach().data)

    def count_flops(self, i: int) -> int:
        with FlopCounterMode(display=False) as counter:
            self.forward_loss(i).backward()
        self.opt.zero_grad()
        return counter.get_total_flops()


class Ours:
    """AudioJEPA tiny + 6 x 192 predictor, the step of bench/train_step.py."""

    def __init__(self, batch: int, joint: bool, masks: list, optim: str) -> None:
        torch.manual_seed(0)
        enc = ENCODER_SIZES["tiny"]
        self.model = AudioJEPA(replace(enc), replace(PREDICTORS["tiny"], joint_targets=joint),
                               ObjectiveConfig()).train()
        self.opt = torch.optim.AdamW(self.model.param_groups(0.05), lr=1e-4, **optimizer_kwargs(optim))
        self.tokens = torch.randn(batch, GRID[0] * GRID[1], enc.patch_dim)
        self.masks = masks  # [(context_idx (B, N_ctx), target_idx (B, K, N_tgt)), ...]

    def forward_loss(self, i: int) -> torch.Tensor:
        ctx, tgt = self.masks[i % len(self.masks)]
        return self.model(self.tokens, GRID, ctx, tgt)["loss"]

    def step(self, i: int) -> None:
        loss = self.forward_loss(i)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.model.update_target(EMA)

    def count_flops(self, i: int) -> int:
        ctx, tgt = self.masks[i % len(self.masks)]
        return count_flops(self.model, self.tokens, GRID, ctx, tgt)


def native_reference_masks(ref: SimpleNamespace, batch: int, count: int) -> list:
    torch.manual_seed(1)
    collator = ref.MaskCollator(input_size=(SIDE, SIDE), patch_size=16, enc_mask_scale=(0.85, 1.0),
                                pred_mask_scale=(0.15, 0.2), aspect_ratio=(0.75, 1.5), nenc=1, npred=4,
                                min_keep=10, allow_overlap=False)
    out = []
    for _ in range(count):
        _, enc, pred = collator([torch.zeros(1)] * batch)
        out.append((list(enc), list(pred)))
    return out


def profile(impls: list[Impl], rows: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile
    for impl in impls:
        impl.step(0)
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            impl.step(1)
        print(f"\n## profile: {impl.label} (one step)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ijepa-path", default=os.environ.get("IJEPA_PATH"),
                   help="checkout of facebookresearch/ijepa (default: $IJEPA_PATH)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=6, help="timed steps per implementation (interleaved)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--ref-masks", default="shared,native", help="shared and/or native (see the docstring)")
    p.add_argument("--ref-pred-heads", type=int, default=3, help="reference predictor heads (their default 3)")
    p.add_argument("--optim", choices=("default", "foreach", "fused"), default="default",
                   help="AdamW implementation, the same for all rows (default: torch's choice, as our trainer on CPU)")
    p.add_argument("--profile", action="store_true", help="also print a torch.profiler table per implementation")
    args = p.parse_args()
    ref = load_reference(args.ijepa_path)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()

    peak = matmul_peak()
    count = max(1, min(args.steps, 4))
    ours_masks = make_masks(GRID, args.batch, count=count, seed=1)
    kinds = [k.strip() for k in args.ref_masks.split(",") if k.strip()]

    impls: list[Impl] = []

    def add(label: str, obj, masks: list, ctx_tgt: Callable) -> None:
        counts = [ctx_tgt(m) for m in masks]
        impls.append(Impl(label, obj.step, [obj.count_flops(i) for i in range(count)],
                          statistics.mean(c for c, _ in counts), statistics.mean(t for _, t in counts),
                          obj.forward_loss))

    def ref_counts(m) -> tuple[int, int]:
        return sum(e.shape[1] for e in m[0]), sum(t.shape[1] for t in m[1])

    for kind in kinds:
        if kind == "shared":
            masks = [([c], list(t.unbind(1))) for c, t in ours_masks]
        elif kind == "native":
            masks = native_reference_masks(ref, args.batch, count)
        else:
            p.error(f"unknown --ref-masks entry {kind!r}")
        add(f"I-JEPA reference ({kind} masks)", Reference(ref, args.batch, args.ref_pred_heads, masks, args.optim),
            masks, ref_counts)
    for joint in (True, False):
        add(f"ajepa ({'joint' if joint else 'separate'} targets)", Ours(args.batch, joint, ours_masks, args.optim),
            ours_masks, lambda m: (m[0].shape[1], m[1].shape[1] * m[1].shape[2]))
    print(f"# built {len(impls)} implementations; timing {args.warmup} + {args.steps} interleaved steps",
          flush=True)

    n = len(impls)
    for i in range(args.warmup + args.steps):
        for j in range(n):
            impl = impls[(i + j) % n]  # rotate the order so no implementation always runs first
            start = time.perf_counter()
            impl.step(i)
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                impl.times.append(elapsed)
        print(f"# step {i}: " + ", ".join(f"{im.label} {1e3 * (im.times[-1] if im.times else 0):.0f} ms"
                                          for im in impls), flush=True)
    peak = max(peak, matmul_peak())
    load_end = os.getloadavg()

    base = impls[0]
    print(f"\nMachine: {machine()}")
    print(f"Load average (1/5/15 min) at start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, "
          f"at end {load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f}")
    print(f"fp32 matmul peak (best of start and end): {peak / 1e9:.1f} GFLOP/s; batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup} warm-up, interleaved; AdamW {args.optim}; "
          f"reference predictor heads {args.ref_pred_heads}, ours {PREDICTORS['tiny'].num_heads}\n")
    print(f"| implementation | ctx / tgt tokens per clip | ms/step median (min-max) | clips/s | GFLOP/step "
          f"| GFLOP/s | % peak | speed vs {base.label} (paired median) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for im in impls:
        med = statistics.median(im.times)
        gflop = sum(im.flops[i % count] for i in range(args.warmup, args.warmup + args.steps)) / args.steps / 1e9
        rate = gflop * 1e9 / med
        ratio = statistics.median(b / t for b, t in zip(base.times, im.times))
        print(f"| {im.label} | {im.mean_ctx:.0f} / {im.mean_tgt:.0f} | {1e3 * med:.0f} "
              f"({1e3 * min(im.times):.0f}-{1e3 * max(im.times):.0f}) | {args.batch / med:.2f} | {gflop:.1f} "
              f"| {rate / 1e9:.1f} | {100 * rate / peak:.0f}% | {ratio:.2f}x |")
    print("\nFigures measured under load are indicative only; the paired ratio is the figure to read.")

    if args.profile:
        profile(impls, rows=25)


if __name__ == "__main__":
    main()
