"""PNG plots of a training run: loss curve, effective-rank curve, and a spectrogram with its masks.

Figures are drawn with matplotlib's object-oriented API on the Agg canvas, so nothing here touches the
global pyplot state or needs a display.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = ["read_metrics", "plot_curve", "plot_curves", "main", "plot_loss", "plot_rank", "mask_grid", "plot_masks"]


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` file, in file order (blank lines ignored)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def plot_curve(records: Sequence[dict], key: str, path: str | os.PathLike, *, title: str,
               ylabel: str, log_y: bool = False, y_min: float | None = None) -> Path:
    """Plot ``record[key]`` against ``record["step"]`` for the records holding a finite value."""
    return plot_curves({"": records}, key, path, title=title, ylabel=ylabel, log_y=log_y, y_min=y_min)


def plot_curves(runs: dict[str, Sequence[dict]], key: str | Sequence[str], path: str | os.PathLike, *, title: str,
                ylabel: str, log_y: bool = False, y_min: float | None = None) -> Path:
    """One line per run (``{label: records}``) and key of ``record[key]`` against step, for side-by-side
    comparisons. Several keys (``["loss", "loss_prediction"]``) draw one line each, labelled by key (and run)."""
    keys = [key] if isinstance(key, str) else list(key)
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.add_subplot()
    all_values: list[float] = []
    labelled = False
    for label, records in runs.items():
        for k in keys:
            points = [(r["step"], r[k]) for r in records if r.get(k) is not None and np.isfinite(r[k])]
            if not points:
                continue
            steps, values = zip(*points)
            name = " ".join(part for part in (label, k if len(keys) > 1 else "") if part)
            ax.plot(steps, values, lw=1.4, label=name or None)
            labelled = labelled or bool(name)
            all_values.extend(values)
    if not all_values:
        ax.text(0.5, 0.5, f"no {', '.join(keys)} values logged", ha="center", va="center", transform=ax.transAxes)
    elif log_y and min(all_values) > 0:
        ax.set_yscale("log")
    if labelled:
        ax.legend(fontsize=8)
    if y_min is not None:
        ax.set_ylim(bottom=y_min)
    ax.set(title=title, xlabel="step", ylabel=ylabel)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_loss(records: Sequence[dict], path: str | os.PathLike) -> Path:
    """Training loss against step, with the unweighted loss terms (``loss_*``) beside it when they were logged."""
    terms = sorted({k for r in records for k in r if k.startswith("loss_")})
    keys = ["loss", *terms] if terms else "loss"
    return plot_curves({"": records}, keys, path, title="training loss", ylabel="loss", log_y=True)


def plot_rank(records: Sequence[dict], path: str | os.PathLike) -> Path:
    """Effective rank of the target embeddings against step (a fall towards 1 means collapse)."""
    # The axis starts at 1 (total collapse) so a healthy rank reads as far from it.
    return plot_curve(records, "effective_rank", path, title="effective rank of target embeddings",
                      ylabel="effective rank", y_min=1.0)


def mask_grid(grid: tuple[int, int], context_idx: torch.Tensor, target_idx: torch.Tensor) -> np.ndarray:
    """Label each patch-grid cell: 0 unused, 1 context, 2 + k target block k. Returns ``(F_p, T_p)`` int.

    ``context_idx`` is ``(N_ctx,)`` and ``target_idx`` ``(K, N_tgt)`` for one sample, in the time-major token
    order ``n = t * F_p + f``. A cell in several target blocks shows the last one.
    """
    f_p, t_p = grid
    labels = np.zeros(f_p * t_p, dtype=np.int64)
    labels[context_idx.cpu().numpy()] = 1
    for k, block in enumerate(target_idx.cpu().numpy()):
        labels[block] = 2 + k
    # Time-major flat order -> (T_p, F_p) -> frequency rows first for display.
    return labels.reshape(t_p, f_p).T


def _cells_to_pixels(cells: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """A per-cell ``(F_p, T_p)`` array repeated to the ``(F_p * pf, T_p * pt)`` spectrogram resolution."""
    return np.kron(cells, np.ones(patch, dtype=cells.dtype))


def block_outline(cells: np.ndarray) -> np.ndarray:
    """The outline of the True cells of a ``(F_p, T_p)`` grid as unit segments ``(S, 2, 2)`` of ``(time, freq)``
    cell coordinates: every edge between a block cell and a non-block cell or the grid's border. Exact on the cell
    boundaries, so an outline never runs past the grid or misses a block at its edge (as a contour of the pixels
    did)."""
    inside = np.pad(np.asarray(cells, dtype=bool), 1)  # a border of outside cells closes blocks at the edge
    segments = []
    f_p, t_p = inside.shape[0] - 2, inside.shape[1] - 2
    for f in range(f_p + 1):  # horizontal edges between rows f-1 and f
        for t in range(t_p):
            if inside[f, t + 1] != inside[f + 1, t + 1]:
                segments.append(((t, f), (t + 1, f)))
    for t in range(t_p + 1):  # vertical edges between columns t-1 and t
        for f in range(f_p):
            if inside[f + 1, t] != inside[f + 1, t + 1]:
                segments.append(((t, f), (t, f + 1)))
    return np.asarray(segments, dtype=np.float64).reshape(-1, 2, 2)


def plot_masks(spec: torch.Tensor, grid: tuple[int, int], patch: tuple[int, int], context_idx: torch.Tensor,
               target_idx: torch.Tensor, path: str | os.PathLike, *, hop_ms: float = 10.0) -> Path:
    """Three panels: a log-mel spectrogram ``(F, T)``; the part of it the context encoder sees; the target
    blocks the predictor must fill in, each outlined in its own colour.

    Args:
        spec: one sample's log-mel.
        grid: ``(F_p, T_p)`` patch grid of the (padded) spectrogram.
        patch: ``(patch_f, patch_t)``.
        context_idx: ``(N_ctx,)`` token indices.
        target_idx: ``(K, N_tgt)`` token indices.
        hop_ms: frame hop, for the time axis in seconds.
    """
    f_p, t_p = grid
    pf, pt = patch
    spec_np = spec.detach().float().cpu().numpy()
    # Pad to whole patches (as patchify does) with NaN, shown as "no data".
    padded = np.full((f_p * pf, t_p * pt), np.nan, dtype=np.float32)
    padded[: spec_np.shape[0], : spec_np.shape[1]] = spec_np[: f_p * pf, : t_p * pt]
    labels = _cells_to_pixels(mask_grid(grid, context_idx, target_idx), patch)
    num_targets = int(target_idx.shape[0])
    extent = (0.0, t_p * pt * hop_ms / 1000.0, 0.0, f_p * pf)
    vmin, vmax = np.nanpercentile(padded, [1, 99]) if np.isfinite(padded).any() else (0.0, 1.0)

    import matplotlib  # the colormap registry; no pyplot state is touched

    cmap = matplotlib.colormaps["magma"].with_extremes(bad="#d9d9d9")
    colours = matplotlib.colormaps["tab10"].colors
    fig = Figure(figsize=(7.5, 7.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    shown = (padded, np.where(labels == 1, padded, np.nan), np.where(labels >= 2, padded, np.nan))
    titles = ("log-mel spectrogram",
              f"context: {len(context_idx)} tokens seen by the context encoder",
              f"targets: {num_targets} blocks of {target_idx.shape[1]} tokens to predict")
    for ax, image, title in zip(axes, shown, titles):
        ax.imshow(np.ma.masked_invalid(image), origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                  extent=extent, interpolation="nearest")
        ax.set(title=title, ylabel="mel bin")
    handles = []
    for k in range(num_targets):
        colour = colours[k % len(colours)]
        # Blocks may overlap; outline each one's own cells, not the label map (which keeps only the last).
        block = np.zeros(f_p * t_p, dtype=bool)
        block[target_idx[k].cpu().numpy()] = True
        # Cell units -> axes units: a time column is pt frames of hop_ms, a row pf mel bins.
        segments = block_outline(block.reshape(t_p, f_p).T) * np.array([pt * hop_ms / 1000.0, pf])
        axes[2].add_collection(LineCollection(segments, colors=[colour], linewidths=1.6))
        handles.append(Patch(facecolor="none", edgecolor=colour, label=f"block {k}"))
    axes[2].legend(handles=handles, loc="upper right", fontsize=7, ncols=min(4, len(handles)))
    axes[2].set_xlabel("time (s)")
    return _save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ajepa.training.plots KEY[,KEY...] OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]``: compare runs' logged
    metrics (several comma-separated keys draw a line per key and run)."""
    p = argparse.ArgumentParser(prog="python -m ajepa.training.plots", description=main.__doc__)
    p.add_argument("key", help="a metrics.jsonl field, e.g. loss or effective_rank; or several, comma-separated")
    p.add_argument("out", help="PNG to write")
    p.add_argument("runs", nargs="+", help="LABEL=RUN_DIR (a folder holding metrics.jsonl)")
    p.add_argument("--log-y", action="store_true")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    runs = {}
    for item in args.runs:
        label, sep, folder = item.partition("=")
        if not sep:
            p.error(f"expected LABEL=RUN_DIR, got {item!r}")
        metrics = Path(folder) / "metrics.jsonl"
        if not metrics.is_file():
            p.error(f"{metrics}: no such file")
        runs[label] = read_metrics(metrics)
    keys = [k for k in args.key.split(",") if k]
    plot_curves(runs, keys, args.out, title=args.title or args.key, ylabel=keys[0] if len(keys) == 1 else "value",
                log_y=args.log_y)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
