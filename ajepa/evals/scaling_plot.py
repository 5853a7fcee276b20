"""Plot a scaling curve from suite reports: an encoder's accuracy minus a baseline's, against training steps.

    python -m ajepa.evals.scaling_plot --task esc50 --baseline reports/loco_s0/results.json:random \
        --point 1600=reports/loco_s0/results.json:jepa --point 1600=reports/loco_s1_esc/results.json:jepa \
        --point 3200=reports/scr4c/results.json:steps3200 --seconds-per-step 0.218 --out docs/img/scaling_esc.png

Each ``--point STEPS=RESULTS_JSON:METHOD`` adds every member (seed) of that method in that report at ``STEPS``;
several points may share a step count. ``--series LABEL`` starts a new curve: the points after it belong to it
(before any ``--series`` they belong to ``--label``), e.g. one curve per learning-rate rule. The baseline is the
mean of its members; its seed std is drawn as a band around zero. ``--seconds-per-step`` adds a second axis in
training minutes. Prints the table it plots.

Beside the PNG it writes ``<out>.csv``: one row per figure plotted (``series,steps,accuracy,source``; the
baseline's rows have the series ``baseline`` and no steps), so that the curve outlives its reports.
``--from-csv`` reads such a file back: its figures are plotted with any ``--baseline`` / ``--point`` given
beside it, e.g. a new point on an old curve:

    python -m ajepa.evals.scaling_plot --task esc50 --from-csv docs/img/scaling_esc_holdout.csv \
        --series "peak lr 1e-3 x 1600 / steps" --point 16000=reports/s23/results.json:steps16000 \
        --out docs/img/scaling_esc_holdout.png
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from ajepa.io import atomic_write

BASELINE = "baseline"  # the series name of the baseline's rows in the CSV
CSV_FIELDS = ("series", "steps", "accuracy", "source")


def member_accuracies(path: str | Path, task: str, method: str) -> list[float]:
    """Per-member accuracies (%) of ``method`` on ``task`` in a suite ``results.json``."""
    results = json.loads(Path(path).read_text(encoding="utf-8"))["results"]
    if task not in results or method not in results[task]:
        raise KeyError(f"{path}: no {method!r} on {task!r} (methods: {sorted(results.get(task, {}))})")
    return [100.0 * m["accuracy"] for m in results[task][method]["members"]]


def _split_source(text: str) -> tuple[str, str]:
    path, _, method = text.rpartition(":")
    if not path or not method:
        raise argparse.ArgumentTypeError(f"expected RESULTS_JSON:METHOD, got {text!r}")
    return path, method


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a curve CSV written by this tool (``series,steps,accuracy,source``), checked."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows, 2):
        if set(CSV_FIELDS) - set(row):
            raise ValueError(f"{path}: expected the columns {','.join(CSV_FIELDS)}, got {','.join(row)}")
        try:
            float(row["accuracy"])
            if row["series"] != BASELINE:
                int(row["steps"])
        except ValueError:
            raise ValueError(f"{path}, line {i}: bad steps or accuracy in {row}") from None
    return rows


def write_csv(path: str | Path, rows: list[dict[str, object]]) -> Path:
    """Write the plotted figures as a curve CSV, atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({**r, "accuracy": round(float(r["accuracy"]), 4)} for r in rows)

    return atomic_write(path, write)


class _SeriesAction(argparse.Action):
    """``--series LABEL``: the following ``--point`` arguments belong to the curve ``LABEL``."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.current_series = values


class _PointAction(argparse.Action):
    """``--point SPEC``: recorded with the curve it belongs to, as ``(series or None, SPEC)``."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.point = [*(namespace.point or []), (getattr(namespace, "current_series", None), values)]


def main(argv: list[str] | None = None) -> int:
    """Parse, read the reports, print the table and write the plot."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.scaling_plot", description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True)
    p.add_argument("--baseline", help="RESULTS_JSON:METHOD of the baseline (e.g. random)")
    p.add_argument("--point", action=_PointAction, help="STEPS=RESULTS_JSON:METHOD (repeatable)")
    p.add_argument("--from-csv", help="a curve CSV this tool wrote: its baseline and points are plotted too")
    p.add_argument("--series", action=_SeriesAction, help="label of the curve the following --point belong to")
    p.add_argument("--seconds-per-step", type=float, default=None, help="adds training minutes to the table/plot")
    p.add_argument("--label", default="JEPA minus random")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args(argv)

    rows: list[dict[str, object]] = []  # every figure plotted, in CSV form
    for row in read_csv(args.from_csv) if args.from_csv else []:
        rows.append({**row, "accuracy": float(row["accuracy"])})
    if args.baseline:
        path, method = _split_source(args.baseline)
        rows += [{"series": BASELINE, "steps": "", "accuracy": a, "source": args.baseline}
                 for a in member_accuracies(path, args.task, method)]
    for series, spec in args.point or []:
        steps, _, source = spec.partition("=")
        path, method = _split_source(source)
        rows += [{"series": series or args.label, "steps": int(steps), "accuracy": a, "source": source}
                 for a in member_accuracies(path, args.task, method)]
    base = [float(r["accuracy"]) for r in rows if r["series"] == BASELINE]
    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["series"] != BASELINE:
            curves[str(r["series"])][int(r["steps"])].append(float(r["accuracy"]))
    if not base or not curves:
        p.error("need a baseline (--baseline, or baseline rows in --from-csv) and at least one point")
    base_mean = statistics.fmean(base)
    base_std = statistics.stdev(base) if len(base) > 1 else 0.0
    print(f"{args.task}: baseline {base_mean:.1f} ± {base_std:.1f} ({len(base)} members)")
    print("| curve | steps | minutes | members | accuracy | minus baseline |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, points in curves.items():
        for s in sorted(points):
            acc = points[s]
            minutes = f"{s * args.seconds_per_step / 60:.0f}" if args.seconds_per_step else "-"
            spread = f" ± {statistics.stdev(acc):.1f}" if len(acc) > 1 else ""
            print(f"| {label} | {s} | {minutes} | {len(acc)} | {statistics.fmean(acc):.1f}{spread} | "
                  f"{statistics.fmean(acc) - base_mean:+.1f} |")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.axhspan(-base_std, base_std, color="0.85", label=f"baseline seed std ({len(base)} seeds)")
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    for (label, points), color in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")):
        steps = sorted(points)
        for s in steps:
            ax.scatter([s] * len(points[s]), [a - base_mean for a in points[s]], color=color, s=18, zorder=3)
        ax.plot(steps, [statistics.fmean(points[s]) - base_mean for s in steps], color=color, marker="o",
                label=f"{label} (mean of seeds)")
    steps = sorted({s for points in curves.values() for s in points})
    ax.set(xscale="log", xlabel="training steps (batch 32)", ylabel="accuracy difference (points)",
           title=f"{args.task}: pretraining held out")
    from matplotlib.ticker import NullFormatter, NullLocator

    ax.set_xticks(steps, [str(s) for s in steps])
    ax.xaxis.set_minor_locator(NullLocator())
    if args.seconds_per_step:
        sec = ax.secondary_xaxis("top", functions=(lambda x: x * args.seconds_per_step / 60,
                                                   lambda m: m * 60 / args.seconds_per_step))
        minutes = [s * args.seconds_per_step / 60 for s in steps]
        sec.set_xticks(minutes, [f"{m:.0f}" for m in minutes])
        sec.xaxis.set_minor_formatter(NullFormatter())
        sec.set_xlabel("minutes on 2 CPU cores")
    ax.legend(fontsize=8, loc="best")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(out))
    print(f"plot: {out}\nfigures: {write_csv(out.with_suffix('.csv'), rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
