"""Evaluation runner shared by the task CLIs, and the report it writes.

A report folder holds ``results.json`` (every figure: per-fold accuracies, confusion matrices, notes,
the command line), ``results.md`` (one table row per model/baseline and probe) and, for the main model,
one confusion-matrix PNG per task and probe.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ajepa.inference import CLIP_POOLINGS, average_layers_arg
from ajepa.io import atomic_write
from ajepa.evals.cache import cached_embeddings, pooling_for
from ajepa.evals.datasets import ClipSet
from ajepa.evals.probes import Split, cross_validate, make_probe

__all__ = ["EvalRecord", "Task", "probe_task", "write_report", "markdown_table", "plot_confusion",
           "add_common_arguments", "add_average_layers_argument", "run_task", "DataNotFound", "resolve_data",
           "cli_main"]

log = logging.getLogger(__name__)


class DataNotFound(FileNotFoundError):
    """The data set is not where the user said; the message says how to get it."""


@dataclass
class EvalRecord:
    """One model (or baseline) x task x probe result."""

    model: str
    model_key: str
    task: str
    probe: str
    acc_mean: float
    acc_std: float
    n_folds: int
    n_clips: int
    protocol: str
    per_fold: list[dict]
    confusion: list[list[int]]
    class_names: list[str]
    is_main: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Task:
    """A data set with its evaluation protocol: the clips, the splits to probe on, and how to describe them.

    Built by each task module's ``load_task`` (``ajepa.evals.esc50``, ``ajepa.evals.speech_commands``, ``ajepa.evals.fsdd``);
    shared by the per-task CLIs (:func:`run_task`) and the multi-method suite (``ajepa.evals.suite``).
    ``check_groups`` verifies that no group (speaker, source recording) is on both sides of a split; it is
    off only for a protocol that shares them by definition (FSDD's own split, ESC-50's official folds,
    which put four source recordings in two folds each).
    """

    name: str
    clips: ClipSet
    splits: list[Split]
    protocol: str
    check_groups: bool = True


def probe_task(features: np.ndarray, task: Task, probe: str, seed: int, *, device: str = "cpu",
               knn_k: int = 5) -> dict:
    """Cross-validate the probe named ``probe`` on ``features`` (rows = ``task.clips``) over ``task.splits``.

    Returns :func:`ajepa.evals.probes.cross_validate`'s dict.
    """
    clips = task.clips
    return cross_validate(features, clips.labels, task.splits, make_probe(probe, device=device, k=knn_k), seed,
                          groups=clips.groups, check_groups=task.check_groups, n_classes=len(clips.class_names))


def markdown_table(records: Sequence[EvalRecord]) -> str:
    """A Markdown table, one row per record; accuracy in percent as mean ± std over folds."""
    lines = ["| model | task | probe | accuracy (%) | folds | clips | protocol |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r.model} | {r.task} | {r.probe} | {100 * r.acc_mean:.1f} ± {100 * r.acc_std:.1f} | "
                     f"{r.n_folds} | {r.n_clips} | {r.protocol} |")
    return "\n".join(lines) + "\n"


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], title: str, path: Path) -> None:
    """Row-normalised confusion matrix (rows: true class) with counts, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(class_names)), labels=class_names, rotation=90)
        ax.set_yticks(range(len(class_names)), labels=class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        if len(class_names) <= 20:
            for i in range(cm.shape[0]):
                for j in range(cm.shape[1]):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if norm[i, j] > 0.5 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def write_report(records: Sequence[EvalRecord], out_dir: str | Path, meta: dict | None = None) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and the main model's confusion PNGs; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for r in records:
        if r.is_main:
            png = out / f"confusion_{r.task}_{r.probe}.png"
            plot_confusion(np.array(r.confusion), r.class_names, f"{r.model} - {r.task} - {r.probe}", png)
            paths[f"confusion_{r.task}_{r.probe}"] = png
    payload = {"meta": meta or {}, "results": [r.__dict__ for r in records]}
    paths["json"] = out / "results.json"
    text = json.dumps(payload, indent=2)
    atomic_write(paths["json"], lambda tmp: tmp.write_text(text, encoding="utf-8"))
    notes = sorted({n for r in records for n in r.notes})
    md = markdown_table(records)
    if notes:
        md += "\nNotes:\n" + "".join(f"- {n}\n" for n in notes)
    paths["md"] = out / "results.md"
    atomic_write(paths["md"], lambda tmp: tmp.write_text(md, encoding="utf-8"))
    return paths


def add_average_layers_argument(p: argparse.ArgumentParser) -> None:
    """``--average-layers``, shared with ``ajepa.evals.suite``: how every encoder (trained and random) is read out."""
    p.add_argument("--average-layers", type=average_layers_arg, default=1, metavar="K|all",
                   help="encoder embeddings are the mean of the last K hidden states, 'all' for every block and "
                        "the patch embedding (default 1, the final output); applies to the model and the random baselines alike, "
                        "the log-mel baseline has no layers")


def add_common_arguments(p: argparse.ArgumentParser, *, default_folds: int = 5) -> None:
    """Arguments shared by ``ajepa.evals.esc50``, ``ajepa.evals.speech_commands`` and ``ajepa.evals.fsdd``."""
    p.add_argument("--data", help="data set root in its official layout")
    p.add_argument("--download", action="store_true",
                   help="download the data set first (into --data, or ~/.cache/ajepa/datasets)")
    p.add_argument("--model", help="exported model folder / .safetensors / checkpoint .pt, or random:SIZE[:SEED]")
    p.add_argument("--probe", default="linear",
                   help="comma-separated probes: linear, knn, mlp, logreg, logreg-cv (the strong probe: logistic "
                        "regression with C picked by grouped cross-validation inside each training part); "
                        "default: linear")
    p.add_argument("--knn-k", type=int, default=5, help="k of the kNN probe (default 5)")
    p.add_argument("--pooling", default="mean", choices=CLIP_POOLINGS,
                   help="clip pooling of encoder embeddings (ajepa.inference.CLIP_POOLINGS; baselines keep their own)")
    add_average_layers_argument(p)
    p.add_argument("--baselines", default="",
                   help="comma-separated baselines in the same report: logmel, random (same size), random:SIZE")
    p.add_argument("--out", default=None, help="report folder (default: runs/evals/<task>)")
    p.add_argument("--seed", type=int, default=0, help="seed of probes, folds and silence cuts (default 0)")
    p.add_argument("--folds", type=int, default=default_folds,
                   help=f"k of speaker-grouped k-fold where no official split applies (default {default_folds})")
    p.add_argument("--cache-dir", default=None, help="embedding cache (default ~/.cache/ajepa/embeddings)")
    p.add_argument("--device", default="cpu", help="torch device for embedding and probes (default cpu)")
    p.add_argument("--batch-size", type=int, default=32, help="embedding batch size (default 32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_task(
    args: argparse.Namespace,
    task: Task,
    *,
    resolve: Callable[..., tuple[str, Any]] | None = None,
    resolve_baseline: Callable[..., tuple[str, Any]] | None = None,
) -> list[EvalRecord]:
    """Embed ``task.clips`` with the model and every baseline, probe them on ``task.splits``, write the report.

    ``resolve``/``resolve_baseline`` default to :mod:`ajepa.evals.baselines` and exist so that tests can inject
    a stand-in model.
    """
    if resolve is None or resolve_baseline is None:
        from ajepa.evals import baselines

        resolve = resolve or baselines.resolve_model
        resolve_baseline = resolve_baseline or baselines.resolve_baseline
    probes = [s.strip() for s in args.probe.split(",") if s.strip()]
    for name in probes:
        make_probe(name)  # fail on a typo before any embedding work
    models: list[tuple[str, Any, bool]] = []
    main_name, main = resolve(args.model, device=args.device, seed=args.seed, average_layers=args.average_layers)
    models.append((main_name, main, True))
    for b in [s.strip() for s in args.baselines.split(",") if s.strip()]:
        name, emb = resolve_baseline(b, main, device=args.device, seed=args.seed,
                                     average_layers=args.average_layers)
        if any(emb.key == m.key for _, m, _ in models):
            log.warning("baseline %s is the same model as one already evaluated; skipped", b)
            continue
        models.append((name, emb, False))

    clips = task.clips
    records: list[EvalRecord] = []
    for name, emb, is_main in models:
        feats = cached_embeddings(emb, clips.paths, cache_dir=args.cache_dir, batch_size=args.batch_size,
                                  pooling=pooling_for(emb, args.pooling),
                                  progress=not args.no_progress)
        for pname in probes:
            t0 = time.perf_counter()
            res = probe_task(feats, task, pname, args.seed, device=args.device, knn_k=args.knn_k)
            log.info("%s / %s: %.4f (%.1f s)", name, pname, res["acc_mean"], time.perf_counter() - t0)
            records.append(EvalRecord(
                model=name, model_key=emb.key, task=task.name, probe=pname, acc_mean=res["acc_mean"],
                acc_std=res["acc_std"], n_folds=res["n_folds"], n_clips=len(clips), protocol=task.protocol,
                per_fold=res["per_fold"], confusion=res["confusion"].tolist(), class_names=list(clips.class_names),
                is_main=is_main, notes=list(clips.notes),
            ))
    out = Path(args.out) if args.out else Path("runs") / "evals" / task.name
    meta = {"task": task.name, "dataset": clips.name, "data": str(args.data), "n_clips": len(clips),
            "class_names": list(clips.class_names), "protocol": task.protocol, "seed": args.seed,
            "pooling": args.pooling, "average_layers": args.average_layers,
            "argv": list(getattr(args, "argv", sys.argv[1:])),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    paths = write_report(records, out, meta)
    print(markdown_table(records))
    print(f"report: {paths['md']}  ({paths['json'].name} and confusion PNGs alongside)")
    return records


def resolve_data(args: argparse.Namespace, source: str, looks_ok: Callable[[Path], bool], layout: str) -> Path:
    """The data root for a CLI run: ``--data`` if it has the expected layout, else download with ``--download``.

    Raises :class:`DataNotFound` with the layout expected and the ways to get the data.
    """
    from ajepa.evals.download import SOURCES, default_download_dir, ensure_dataset

    given = Path(args.data).expanduser() if args.data else None
    if given is not None and looks_ok(given):
        return given
    if args.download:
        root = ensure_dataset(source, given, progress=not args.no_progress)
        if not looks_ok(root):
            raise DataNotFound(f"downloaded {source} to {root}, but it does not have the expected layout: {layout}")
        return root
    where = f"{given} does not have" if given is not None else "no --data given; expected"
    raise DataNotFound(
        f"{where} the layout {layout}.\n"
        f"Get it with --download (saved under --data, or {default_download_dir()}), "
        f"or `python -m ajepa.evals.download {source}`, or by hand from {SOURCES[source].url} and pass --data."
    )


def cli_main(parser: argparse.ArgumentParser, argv: Sequence[str] | None, body: Callable[[argparse.Namespace], Any]
             ) -> int:
    """Parse ``argv``, run ``body(args)``; data-set problems become a clear message and exit status 2."""
    from ajepa.evals.download import DownloadError

    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if not args.model:
        parser.error("--model is required (a model path or random:SIZE)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        body(args)
    except (DataNotFound, DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
