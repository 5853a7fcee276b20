"""Several methods x several seeds x several tasks, one probe, one report with mean ± std over seeds.

    python -m ajepa.evals.suite --data-root ../shared/data --tasks esc10,speech_commands,fsdd \\
        --method jepa=runs/a_s0/checkpoints/last.pt,runs/a_s1/checkpoints/last.pt \\
        --method random=random:runs/a_s0/checkpoints/last.pt:0,random:runs/a_s0/checkpoints/last.pt:1 \\
        --method logmel=logmel --probe linear --seed 0 --out reports/suite

A method is ``NAME=MEMBER[,MEMBER...]``; its members are the seeds (pretraining runs, random inits) whose
spread the report shows. A member is a model path (export folder, ``.safetensors``, training checkpoint
``.pt``), ``random:SIZE[:SEED]``, ``random:MODEL_PATH[:SEED]`` (random init with that model's encoder,
front end and clip length) or ``logmel``. ``{holdout}`` in a member is replaced by each task's holdout name
(``esc`` for esc10 and esc50, else the task's name), so that ``jepa=runs/loco_{holdout}_s0/checkpoints/last.pt``
evaluates every task with the encoder pretrained without that task's corpus (leave-one-corpus-out:
``python -m ajepa.train ... holdout=<name>``); the report says, per
member and task, whether the task's data was held out of the checkpoint's corpus. Every member is evaluated on every task with the task's own
protocol (the one of ``ajepa.evals.esc50`` / ``ajepa.evals.speech_commands`` / ``ajepa.evals.fsdd``: :func:`load_task` of
each), the same probe and the same probe/fold ``--seed``. A member's figure is its probe accuracy averaged
over folds; a method's figure is the mean ± sample std (ddof 1) of its members' figures. ``--pooling`` and
``--average-layers`` (the mean of each encoder's last K hidden states, ``all`` for every block and the patch
embedding) apply to every encoder member, trained or random, and are recorded in the report; ``logmel`` has its
own pooling and no layers.

Writes ``results.json`` (every figure, per-fold accuracies included) and ``results.md`` under ``--out``,
rewritten after each member so that a partial run leaves a partial report (``"complete": false``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ajepa.inference import CLIP_POOLINGS
from ajepa.io import atomic_write
from ajepa.evals import arabic_speech_commands, esc50, fsdd, speech_commands
from ajepa.evals.cache import cached_embeddings, pooling_for
from ajepa.evals.probes import make_probe
from ajepa.evals.report import DataNotFound, Task, add_average_layers_argument, probe_task

__all__ = ["TASKS", "SuiteError", "parse_method", "check_member", "resolve_member", "member_for_task",
           "pretraining_exposure", "load_tasks", "run_suite", "summarise", "suite_markdown", "main"]

log = logging.getLogger(__name__)


class SuiteError(ValueError):
    """A bad ``--method`` / ``--tasks`` argument; the message names the offending method and member."""


@dataclass(frozen=True)
class TaskSpec:
    """How the suite finds and loads one task under ``--data-root``."""

    dirs: tuple[str, ...]  # folder names tried under --data-root, in order
    looks_ok: Callable[[Path], bool]
    layout: str
    load: Callable[..., Task]  # (root, seed=, folds=) -> Task
    holdout: str  # the configs/holdout/<name>.yaml that leaves this task's corpus out of pretraining


TASKS: dict[str, TaskSpec] = {
    "esc10": TaskSpec(("esc10", "ESC-50-master", "ESC-50", "esc50"), esc50.looks_ok, esc50.LAYOUT,
                      lambda root, seed, folds: esc50.load_task(root, esc10=True), "esc"),
    "esc50": TaskSpec(("esc50", "esc50_dev", "ESC-50-master", "ESC-50"), esc50.looks_ok, esc50.LAYOUT,
                      lambda root, seed, folds: esc50.load_task(root, esc10=False), "esc"),
    "speech_commands": TaskSpec(
        ("speech_commands_v2_test_dev", "speech_commands", "speech_commands_v0.02", "speech_commands_test_set_v0.02"),
        speech_commands.looks_ok, speech_commands.LAYOUT,
        lambda root, seed, folds: speech_commands.load_task(root, task="12", seed=seed, folds=folds),
        "speech_commands"),
    "fsdd": TaskSpec(("fsdd", "free-spoken-digit-dataset", "free-spoken-digit-dataset-master"), fsdd.looks_ok,
                     fsdd.LAYOUT, lambda root, seed, folds: fsdd.load_task(root, split="grouped", seed=seed, folds=folds),
                     "fsdd"),
    "arabic_speech_commands": TaskSpec(
        ("arabic_speech_commands", "ar_speech_commands"), arabic_speech_commands.looks_ok, arabic_speech_commands.LAYOUT,
        lambda root, seed, folds: arabic_speech_commands.load_task(root, split="official", seed=seed, folds=folds),
        "arabic_speech_commands"),
}

STD_NOTE = "mean ± sample std (ddof 1) over a method's members (seeds); a member's accuracy is its mean over folds"


# ----------------------------------------------------------------------------- arguments
def parse_method(text: str) -> tuple[str, list[str]]:
    """``NAME=MEMBER[,MEMBER...]`` -> (name, members)."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    members = [m.strip() for m in rest.split(",") if m.strip()]
    if not sep or not name or not members:
        raise SuiteError(f"--method {text!r}: expected NAME=MEMBER[,MEMBER...], e.g. jepa=runs/a/last.pt,runs/b/last.pt")
    dup = sorted({m for m in members if members.count(m) > 1})
    if dup:
        raise SuiteError(f"method {name!r}: member {dup[0]!r} is listed twice (it would count as two seeds)")
    return name, members


def check_member(method: str, spec: str) -> None:
    """Fail early, naming the method and member, when a member's model does not exist."""
    from ajepa.evals.baselines import _encoder_sizes, _split_random_spec

    if spec == "logmel":
        return
    if spec.startswith("random:"):
        target, _ = _split_random_spec(spec)
        if target in _encoder_sizes() or (target and Path(target).expanduser().exists()):
            return
        raise SuiteError(f"method {method!r}: member {spec!r}: {target!r} is neither an encoder size "
                         f"({', '.join(sorted(_encoder_sizes()))}) nor an existing model path")
    if not Path(spec).expanduser().exists():
        raise SuiteError(f"method {method!r}: member {spec!r} not found (no such file or folder; give an exported "
                         "model, a training checkpoint .pt, random:SIZE[:SEED], random:MODEL_PATH[:SEED] or logmel)")


def resolve_member(spec: str, *, device: str = "cpu", seed: int = 0, encoder: str | None = None,
                   average_layers: int | str = 1) -> tuple[str, Any]:
    """A member spec -> (display name, embedder), through :mod:`ajepa.evals.baselines`; ``average_layers`` applies to
    encoders (trained and random), not to ``logmel``."""
    from ajepa.evals.baselines import resolve_baseline, resolve_model

    if spec == "logmel":
        return resolve_baseline("logmel", None, device=device, seed=seed)
    return resolve_model(spec, device=device, seed=seed, encoder=encoder, average_layers=average_layers)


HOLDOUT_PLACEHOLDER = "{holdout}"


def member_for_task(spec: str, task: str) -> str:
    """The member to evaluate on ``task``: ``spec`` with :data:`HOLDOUT_PLACEHOLDER` replaced by the name of the
    task's holdout config (``esc`` for esc10 and esc50, else the task's own name).

    This is how a leave-one-corpus-out method is given: ``jepa=runs/loco_{holdout}_s0/checkpoints/last.pt``
    evaluates each task with the encoder pretrained without that task's corpus (``holdout=<name>`` at training).
    """
    return spec.replace(HOLDOUT_PLACEHOLDER, TASKS[task].holdout)


def pretraining_exposure(spec: str, task_root: Path) -> str:
    """Whether a training checkpoint's corpus held the task's data: ``held out``, ``in corpus``, ``not in corpus``.

    Read from the checkpoint's saved config (``data.root``, ``data.exclude``); ``unknown`` for anything that
    records no training data (exports, random encoders are ``none``, the log-mel baseline ``none``).
    ``data.root`` is taken relative to the current folder, as the trainer took it.
    """
    if spec == "logmel" or spec.startswith("random:"):
        return "none"
    path = Path(spec).expanduser()
    if path.suffix != ".pt" or not path.is_file():
        return "unknown"
    from ajepa.checkpoint import load_checkpoint

    try:
        data = (load_checkpoint(path).get("config") or {}).get("data") or {}
    except Exception:  # an unreadable checkpoint fails in resolve with its own message
        return "unknown"
    if data.get("source") != "folder" or not data.get("root"):
        return "not in corpus"
    corpus = Path(data["root"]).expanduser().resolve()
    task = task_root.expanduser().resolve()
    if corpus != task and corpus not in task.parents:
        return "not in corpus"
    rel = task.relative_to(corpus).as_posix() if corpus != task else ""
    for pattern in data.get("exclude") or ():
        p = str(pattern).strip("/")
        if rel == p or rel.startswith(p + "/"):
            return "held out"
    return "in corpus"


def _task_root(name: str, data_root: str | None, overrides: dict[str, str]) -> Path:
    spec = TASKS[name]
    tried: list[Path] = []
    if name in overrides:
        tried = [Path(overrides[name]).expanduser()]
    elif data_root is not None:
        base = Path(data_root).expanduser()
        tried = [base / d for d in spec.dirs]
    for root in tried:
        if spec.looks_ok(root):
            return root
    where = ", ".join(str(t) for t in tried) if tried else "no --data-root or --data given"
    raise DataNotFound(f"task {name}: data not found ({where}); expected the layout {spec.layout}. "
                       f"Pass --data {name}=PATH, or get it with `python -m ajepa.evals.download`.")


def load_tasks(names: Sequence[str], data_root: str | None, *, seed: int, folds: int,
               overrides: dict[str, str] | None = None) -> dict[str, tuple[Path, Task]]:
    """Read every task's data and build its protocol (before any embedding, so bad data fails early)."""
    out = {}
    for name in names:
        root = _task_root(name, data_root, overrides or {})
        out[name] = (root, TASKS[name].load(root, seed=seed, folds=folds))
    return out


# ----------------------------------------------------------------------------- aggregation and report
def summarise(accs: Sequence[float]) -> dict:
    """``{"mean", "std", "n"}`` of member accuracies; ``std`` is the sample std, ``None`` for one member."""
    a = np.asarray(accs, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else None, "n": int(len(a))}


def _cell(mean: float, std: float | None, n: int) -> str:
    if std is None:
        return f"{100 * mean:.1f} ({n} seed{'s' if n != 1 else ''})"
    return f"{100 * mean:.1f} ± {100 * std:.1f} ({n} seeds)"


def suite_markdown(payload: dict) -> str:
    """The ``results.md`` text of a suite payload (see :func:`run_suite`)."""
    meta, tasks, methods, results = payload["meta"], payload["tasks"], payload["methods"], payload["results"]
    lines = [f"# Evaluation suite: {meta['probe']} probe" + ("" if payload["complete"] else " (INCOMPLETE)"), ""]
    lines += [f"Accuracy (%), {STD_NOTE}.", ""]
    if "pooling" in meta:  # reports written before these were recorded lack them
        lines += [f"Encoder features: {_features_text(meta['pooling'], meta['average_layers'])}.", ""]
    lines += ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for m in methods:
        cells = []
        for t in tasks:
            r = results.get(t, {}).get(m)
            cells.append(_cell(r["mean"], r["std"], r["n"]) if r else "–")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Per member", "", "Accuracy (%), mean ± std over folds; for training checkpoints, whether the "
              "task's data was *held out* of the pretraining corpus or *in corpus* (transductive).", ""]
    lines += ["| method | member | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 2) + "|"]
    for m, members in methods.items():
        for spec in members:
            cells = []
            for t in tasks:
                r = results.get(t, {}).get(m)
                mem = next((x for x in r["members"] if x["member"] == spec), None) if r else None
                exposure = mem.get("pretraining", "unknown") if mem else "unknown"
                tag = f" ({exposure})" if exposure in ("held out", "in corpus") else ""
                cells.append(f"{100 * mem['accuracy']:.1f} ± {100 * mem['fold_std']:.1f}{tag}" if mem else "–")
            lines.append(f"| {m} | `{spec}` | " + " | ".join(cells) + " |")
    lines += ["", "## Command", "", "```", meta["command"], "```", "", "## Protocols", ""]
    for t, info in tasks.items():
        lines.append(f"- **{t}** ({info['dataset']}, {info['n_clips']} clips, {info['n_classes']} classes, "
                     f"data `{info['data']}`): {info['protocol']}")
        lines += [f"  - {n}" for n in info["notes"]]
    lines += [f"- Probe `{meta['probe']}`, probe/fold seed {meta['seed']} (fold i trains with seed + i), the same "
              "for every method and member; features standardised with training-split statistics.",
              f"- Encoder of training checkpoints: {meta['encoder']}.",
              f"- {STD_NOTE}; a single member has no std."]
    return "\n".join(lines) + "\n"


def _features_text(pooling: str, average_layers: int | str) -> str:
    """How the encoder members were read out, for the report header (the same for every member)."""
    layers = {1: "the final block's output", "all": "the mean of every layer's output (patch embedding and blocks)"}.get(
        average_layers, f"the mean of the last {average_layers} hidden states")
    return f"`{pooling}` pooling of {layers} (`--average-layers {average_layers}`; logmel keeps its own statistics)"


def _write(out: Path, payload: dict) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "md": out / "results.md"}
    atomic_write(paths["json"], lambda tmp: tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8"))
    md = suite_markdown(payload)
    atomic_write(paths["md"], lambda tmp: tmp.write_text(md, encoding="utf-8"))
    return paths


# ----------------------------------------------------------------------------- runner
def run_suite(args: argparse.Namespace, *, resolve: Callable[..., tuple[str, Any]] | None = None) -> dict:
    """Evaluate every member of every method on every task, write the report, return its payload.

    ``resolve(spec, device=, seed=, encoder=, average_layers=) -> (display name, embedder)`` defaults to
    :func:`resolve_member`; tests may inject a stand-in.
    """
    resolve = resolve or resolve_member
    task_names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in task_names if t not in TASKS]
    if not task_names or unknown:
        raise SuiteError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    if len(set(task_names)) != len(task_names):
        raise SuiteError(f"--tasks lists a task twice: {args.tasks!r}")
    methods: dict[str, list[str]] = {}
    for text in args.method or []:
        name, members = parse_method(text)
        if name in methods:
            raise SuiteError(f"method {name!r} is given twice; list all its members in one --method")
        methods[name] = members
    if not methods:
        raise SuiteError("give at least one --method NAME=MEMBER[,MEMBER...]")
    for name, members in methods.items():
        for spec in members:
            for t in task_names:
                check_member(name, member_for_task(spec, t))
    make_probe(args.probe)  # a typo fails before any embedding work
    overrides = {}
    for text in args.data or []:
        t, sep, path = text.partition("=")
        if not sep or t not in TASKS:
            raise SuiteError(f"--data {text!r}: expected TASK=PATH with TASK one of {', '.join(TASKS)}")
        overrides[t] = path
    tasks = load_tasks(task_names, args.data_root, seed=args.seed, folds=args.folds, overrides=overrides)

    argv = list(getattr(args, "argv", sys.argv[1:]))
    payload: dict = {
        "complete": False,
        "meta": {"command": "python -m ajepa.evals.suite " + shlex.join(argv), "argv": argv, "probe": args.probe,
                 "seed": args.seed, "folds": args.folds, "device": args.device, "pooling": args.pooling,
                 "average_layers": args.average_layers,
                 "encoder": args.encoder or ("target (context for checkpoints without a target encoder, e.g. MAE, "
                                             "or whose target encoder is a frozen teacher)"),
                 "std": STD_NOTE, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "tasks": {t: {"dataset": task.clips.name, "data": str(root), "n_clips": len(task.clips),
                      "n_classes": len(task.clips.class_names), "class_names": list(task.clips.class_names),
                      "protocol": task.protocol, "n_folds": len(task.splits), "notes": list(task.clips.notes)}
                  for t, (root, task) in tasks.items()},
        "methods": methods,
        "results": {t: {} for t in task_names},
    }
    out = Path(args.out)
    seen: dict[str, str] = {}  # embedder key -> "method/member", to catch one model counted twice
    for mname, members in methods.items():
        for spec in members:
            loaded: tuple[str, str, Any] | None = None  # (resolved spec, display name, embedder)
            for t, (root, task) in tasks.items():
                actual = member_for_task(spec, t)
                if loaded is None or loaded[0] != actual:
                    loaded = None  # free the previous task's model before loading the next one
                    try:
                        display, emb = resolve(actual, device=args.device, seed=args.seed, encoder=args.encoder,
                                               average_layers=args.average_layers)
                    except Exception as e:  # the loader's own message, with the method and member named
                        raise SuiteError(f"method {mname!r}: member {actual!r} could not be loaded: {e}") from e
                    if emb.key in seen and seen[emb.key] != f"{mname}/{spec}":
                        log.warning("method %s member %s is the same model as %s", mname, actual, seen[emb.key])
                    seen.setdefault(emb.key, f"{mname}/{spec}")
                    loaded = (actual, display, emb)
                _, display, emb = loaded
                log.info("%s / %s: embedding %s (%d clips)", mname, actual, t, len(task.clips))
                feats = cached_embeddings(emb, task.clips.paths, cache_dir=args.cache_dir, batch_size=args.batch_size,
                                          pooling=pooling_for(emb, args.pooling),
                                          progress=not args.no_progress)
                t0 = time.perf_counter()
                res = probe_task(feats, task, args.probe, args.seed, device=args.device, knn_k=args.knn_k)
                log.info("%s / %s / %s: %.4f (probe %.1f s)", mname, actual, t, res["acc_mean"],
                         time.perf_counter() - t0)
                entry = payload["results"][t].setdefault(mname, {"members": []})
                entry["members"].append({
                    "member": spec, "resolved": actual, "model": display, "model_key": emb.key,
                    "pretraining": pretraining_exposure(actual, root),
                    "accuracy": res["acc_mean"], "fold_std": res["acc_std"],
                    "fold_accuracies": [f["accuracy"] for f in res["per_fold"]],
                    "per_fold": res["per_fold"], "confusion": res["confusion"].tolist(),
                })
                entry.update(summarise([m["accuracy"] for m in entry["members"]]))
                _write(out, payload)
            loaded = None
    payload["complete"] = True
    paths = _write(out, payload)
    print(suite_markdown(payload).split("\n## Per member")[0])
    print(f"report: {paths['md']} ({paths['json'].name} alongside)")
    return payload


def build_parser() -> argparse.ArgumentParser:
    """The ``ajepa.evals.suite`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.suite", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None,
                   help="folder holding the data sets (tried names per task: "
                        + "; ".join(f"{t}: {'|'.join(s.dirs)}" for t, s in TASKS.items()) + ")")
    p.add_argument("--data", action="append", metavar="TASK=PATH", help="data folder of one task (overrides --data-root)")
    p.add_argument("--tasks", default="esc10,speech_commands,fsdd",
                   help=f"comma-separated tasks from {', '.join(TASKS)} (default esc10,speech_commands,fsdd)")
    p.add_argument("--method", action="append", metavar="NAME=MEMBER[,MEMBER...]",
                   help="a method and its members (seeds); repeat for each method")
    p.add_argument("--probe", default="linear",
                   help="one probe for every method: linear, knn, mlp, logreg, logreg-cv (the strong probe)")
    p.add_argument("--knn-k", type=int, default=5, help="k of the kNN probe (default 5)")
    p.add_argument("--pooling", default="mean", choices=CLIP_POOLINGS,
                   help="clip pooling of encoder embeddings (ajepa.inference.CLIP_POOLINGS; baselines keep their own)")
    add_average_layers_argument(p)
    p.add_argument("--seed", type=int, default=0, help="seed of probes and grouped folds (default 0)")
    p.add_argument("--folds", type=int, default=5, help="k of speaker-grouped k-fold (default 5)")
    p.add_argument("--encoder", choices=("target", "context"), default=None,
                   help="encoder of training checkpoints (default: target, or context where there is none, "
                        "e.g. MAE, or where it is a frozen teacher)")
    p.add_argument("--out", default="reports/suite", help="report folder (default reports/suite)")
    p.add_argument("--cache-dir", default=None, help="embedding cache (default ~/.cache/ajepa/embeddings)")
    p.add_argument("--device", default="cpu", help="torch device for embedding and probes (default cpu)")
    p.add_argument("--batch-size", type=int, default=32, help="embedding batch size (default 32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None, **run_kwargs) -> int:
    """CLI entry point; bad arguments, missing models and missing data give ``error: ...`` and status 2."""
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_suite(args, **run_kwargs)
    except (SuiteError, DataNotFound) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
