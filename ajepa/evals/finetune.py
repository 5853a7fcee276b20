"""Fine-tuning evaluation (the A-JEPA / Audio-MAE protocol): the pretrained encoder plus a linear head, trained end
to end on each fold of a task, on the same folds as the frozen probes.

    python -m ajepa.evals.finetune --data-root ../shared/data --task esc50 --model ajepa/pretrained/default --out reports/ft
    python -m ajepa.evals.finetune --data-root ../shared/data --task esc50 --model random:ajepa/pretrained/default:0 ...

``--model`` is an export, a training checkpoint (the target encoder by default) or ``random:MODEL_PATH[:SEED]``
(a random initialisation of that model's encoder, front end and clip length: the baseline of the same shape).
The recipe (:class:`FinetuneConfig`): AdamW with layer-wise learning-rate decay, linear warm-up then cosine,
drop-path, label smoothing; on the fly: random gain and time shift of the waveform, SpecAugment time and
frequency masks and mixup on the log-mel, and A-JEPA's regularised masking (a fraction of the patch tokens dropped
in training); plain or class-balanced sampling. Training crops are windows of ``--clip-seconds`` (default: the
encoder's own window, e.g. 1 s for the ``cpu15`` recipe; ``--clip-seconds 5`` trains on whole ESC-50 clips, as
A-JEPA does, at about 5x the cost) at a random offset; a test clip is classified by the mean of its windows'
probabilities, as ``ajepa.evals.predict`` does.
Deterministic for ``--seed`` on the CPU. Writes ``results.json``, ``results.md``, a confusion matrix and the
learning curves (PNG) under ``--out``; ``--export DIR`` saves the model of the first fold with its label names
(``ajepa.evals.classifier``, usable by ``python -m ajepa.evals.predict``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ajepa.features.audio import clip_samples, load_audio
from ajepa.io import atomic_write
from ajepa.training.schedules import warmup_cosine
from ajepa.evals.augment import drop_tokens, mixup, random_gain, spec_augment, time_shift
from ajepa.evals.classifier import AudioClassifier, classifier_from_embedder, save_classifier

__all__ = ["FinetuneConfig", "finetune_fold", "layer_decay_groups", "main", "run_finetune"]

log = logging.getLogger(__name__)


def _opt(default: Any, help: str) -> Any:
    """A :class:`FinetuneConfig` field whose ``help`` is both its documentation and its CLI flag's help."""
    return field(default=default, metadata={"help": help})


@dataclass
class FinetuneConfig:
    """The fine-tuning recipe; the defaults fit a ~2 M-parameter encoder on 2 CPU cores (ESC-50, 4 folds: 10-12 min
    for the 1.8 M-parameter `cpu15` encoder, docs/RESULTS.md)."""

    epochs: int = _opt(30, "passes over each training fold")
    batch_size: int = _opt(32, "clips per step")
    lr: float = _opt(1e-3, "peak AdamW learning rate of the head; block i gets lr * layer_decay ** (depth - i)")
    min_lr: float = _opt(1e-6, "learning rate at the end of the cosine")
    weight_decay: float = _opt(0.05, "AdamW weight decay (not on biases and norms)")
    layer_decay: float = _opt(0.75, "layer-wise learning-rate decay, in (0, 1]; 1 = off")
    warmup_fraction: float = _opt(0.1, "fraction of the steps spent warming up linearly")
    drop_path: float = _opt(0.1, "stochastic-depth rate of the encoder's blocks")
    label_smoothing: float = _opt(0.1, "label smoothing of the cross-entropy")
    mixup_alpha: float = _opt(0.5, "Beta(alpha, alpha) mixup of log-mels and labels; 0 = off")
    freq_masks: int = _opt(2, "SpecAugment frequency masks per clip")
    freq_width: int = _opt(24, "mel bins per frequency mask, at most")
    time_masks: int = _opt(2, "SpecAugment time masks per clip")
    time_width: int = _opt(20, "frames per time mask, at most (10 ms each)")
    gain_db: float = _opt(6.0, "random gain, uniform in +-gain_db dB, capped so no sample clips; 0 = off")
    time_shift: bool = _opt(True, "rotate each waveform by a random offset within its real samples")
    token_drop: float = _opt(0.2, "fraction of valid patch tokens dropped in training (A-JEPA), in [0, 1); 0 = off")
    balanced: bool = _opt(False, "class-balanced sampling instead of plain shuffling")
    clip_seconds: float = _opt(0.0, "training crop and test window in seconds; 0 = the encoder's own window")
    seed: int = _opt(0, "seed of the folds (tasks without official ones), the head's init, crops, augmentation")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"epochs, batch_size and lr must be positive: {self.epochs}, {self.batch_size}, {self.lr}")
        if self.clip_seconds < 0:
            raise ValueError(f"clip_seconds must be >= 0 (0 = the encoder's window): {self.clip_seconds}")
        if not 0 < self.layer_decay <= 1 or not 0 <= self.token_drop < 1:
            raise ValueError(f"layer_decay must be in (0, 1] and token_drop in [0, 1): {self.layer_decay}, "
                             f"{self.token_drop}")


def layer_decay_groups(model: AudioClassifier, lr: float, weight_decay: float, decay: float) -> list[dict]:
    """AdamW parameter groups with layer-wise learning-rate decay.

    Layer ids: 0 for the patch embedding, ``i + 1`` for block ``i``, ``depth + 1`` for the encoder's final norm
    and the head; a layer's rate is ``lr * decay ** (depth + 1 - id)``. Biases, norms and other 1-D tensors get no
    weight decay. Each group carries ``lr_scale`` (the schedule multiplies it) and ``layer``.
    """
    depth = len(model.encoder.blocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad or name.startswith("frontend."):
            continue
        if name.startswith("encoder.patch_embed") or name.startswith("encoder.pos_embed"):
            layer = 0
        elif name.startswith("encoder.blocks."):
            layer = int(name.split(".")[2]) + 1
        else:
            layer = depth + 1
        no_decay = param.ndim <= 1 or name.endswith(".bias")
        key = (layer, no_decay)
        if key not in groups:
            scale = decay ** (depth + 1 - layer)
            groups[key] = {"params": [], "layer": layer, "lr_scale": scale, "lr": lr * scale,
                           "weight_decay": 0.0 if no_decay else weight_decay}
        groups[key]["params"].append(param)
    return [groups[k] for k in sorted(groups)]


@dataclass
class _Clips:
    """Decoded 16 kHz waveforms of the task's clips (kept in memory: the sets here are small) and labels."""

    wavs: list[Tensor]
    labels: np.ndarray


def _load_clips(paths: Sequence[str], labels: np.ndarray, sample_rate: int) -> _Clips:
    return _Clips([load_audio(p, target_sr=sample_rate) for p in paths], np.asarray(labels))


def _crop_batch(wavs: list[Tensor], samples: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random crops of ``samples`` (zero-padded when shorter) and their real lengths."""
    batch = torch.zeros(len(wavs), samples)
    lengths = torch.zeros(len(wavs), dtype=torch.long)
    for i, w in enumerate(wavs):
        start = int(torch.randint(w.numel() - samples + 1, (1,), generator=gen)) if w.numel() > samples else 0
        x = w[start:start + samples]
        batch[i, :x.numel()] = x
        lengths[i] = x.numel()
    return batch, lengths


def _order(labels: np.ndarray, balanced: bool, gen: torch.Generator) -> np.ndarray:
    """One epoch's sample order: a permutation, or as many draws with each class equally likely."""
    n = len(labels)
    if not balanced:
        return torch.randperm(n, generator=gen).numpy()
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    weights = torch.as_tensor(1.0 / counts[inverse], dtype=torch.float64)
    return torch.multinomial(weights, n, replacement=True, generator=gen).numpy()


@torch.inference_mode()
def predict_clips(model: AudioClassifier, wavs: Sequence[Tensor], batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(N, C)`` of whole clips: the mean over each clip's model windows."""
    from ajepa.inference.windows import WindowPlan

    model.eval()
    plan = WindowPlan(model.tokenizer, model.clip_seconds)
    items = [(i, x) for i, w in enumerate(wavs) for _, _, x in plan.cut(w, i)]
    sums = torch.zeros(len(wavs), model.num_classes)
    counts = torch.zeros(len(wavs))
    device = next(model.parameters()).device
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        batch = torch.zeros(len(chunk), plan.clip_samples)
        lengths = torch.tensor([x.numel() for _, x in chunk])
        for j, (_, x) in enumerate(chunk):
            batch[j, :x.numel()] = x
        probs = model(batch.to(device), lengths.to(device)).softmax(-1).cpu()
        owner = torch.tensor([i for i, _ in chunk])
        sums.index_add_(0, owner, probs)
        counts.index_add_(0, owner, torch.ones(len(chunk)))
    return (sums / counts[:, None]).numpy()


def finetune_fold(model: AudioClassifier, train: _Clips, test: _Clips, cfg: FinetuneConfig, *,
                  progress: bool = False, desc: str = "fine-tuning") -> dict[str, Any]:
    """Train ``model`` on ``train`` and evaluate on ``test``; returns accuracy, predictions and the learning curve.

    Raises:
        ValueError: an empty training or test set.
    """
    if len(train.wavs) == 0 or len(test.wavs) == 0:
        raise ValueError(f"{desc}: empty fold ({len(train.wavs)} training and {len(test.wavs)} test clips)")
    gen = torch.Generator().manual_seed(cfg.seed)
    device = next(model.parameters()).device
    groups = layer_decay_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay)
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    steps_per_epoch = math.ceil(len(train.wavs) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_fraction * total))
    n_classes = model.num_classes
    samples = clip_samples(model.clip_seconds, model.tokenizer.sample_rate)
    curve, step = [], 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit="step")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # drop-path draws from the global RNG; scoped to this fold
        for epoch in range(cfg.epochs):
            model.train()
            order = _order(train.labels, cfg.balanced, gen)
            losses = []
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                wav, lengths = _crop_batch([train.wavs[i] for i in idx], samples, gen)
                wav = random_gain(wav, lengths, cfg.gain_db, gen)
                if cfg.time_shift:
                    wav = time_shift(wav, lengths, gen)
                wav, lengths = wav.to(device), lengths.to(device)
                spec = model.tokenizer.spectrogram(wav)
                frames = model.frontend.valid_frames(lengths, spec.shape[-1])
                spec = spec_augment(spec, frames, gen, freq_masks=cfg.freq_masks, freq_width=cfg.freq_width,
                                    time_masks=cfg.time_masks, time_width=cfg.time_width)
                target = torch.full((len(idx), n_classes), cfg.label_smoothing / n_classes, device=device)
                target[torch.arange(len(idx)), torch.as_tensor(train.labels[idx], device=device)] += (
                    1.0 - cfg.label_smoothing)
                spec, target, _ = mixup(spec, target, cfg.mixup_alpha, gen)
                keep = None
                if cfg.token_drop > 0:
                    keep = drop_tokens(model.tokenizer.from_spec(spec, lengths).valid, cfg.token_drop, gen)
                logits = model(wav, lengths, keep_idx=keep, spec=spec)
                loss = -(target * logits.log_softmax(-1)).sum(-1).mean()
                lr = warmup_cosine(step, total, warmup, cfg.lr, cfg.min_lr)
                for g in opt.param_groups:
                    g["lr"] = lr * g["lr_scale"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                step += 1
                if bar is not None:
                    bar.update(1)
            curve.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "lr": lr})
    if bar is not None:
        bar.close()
    probs = predict_clips(model, test.wavs)
    pred = probs.argmax(1)
    return {"accuracy": float((pred == test.labels).mean()), "pred": pred, "curve": curve}


def run_finetune(task: Any, embedder: Any, cfg: FinetuneConfig, *, progress: bool = False,
                 export: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune a fresh copy of ``embedder``'s encoder on every split of ``task`` (an ``ajepa.evals.report.Task``)."""
    clips = task.clips
    data = _load_clips(clips.paths, clips.labels, int(embedder.sample_rate))
    folds, confusion = [], np.zeros((len(clips.class_names),) * 2, dtype=np.int64)
    for k, split in enumerate(task.splits):
        train_idx = split.train if split.val is None else np.concatenate([split.train, split.val])
        pick = lambda idx: _Clips([data.wavs[i] for i in idx], data.labels[idx])  # noqa: E731
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # the head's initialisation; the caller's RNG is left alone
            model = classifier_from_embedder(embedder, len(clips.class_names), drop_path=cfg.drop_path,
                                             clip_seconds=cfg.clip_seconds or None)
        t0 = time.perf_counter()
        out = finetune_fold(model, pick(train_idx), pick(split.test), cfg, progress=progress,
                            desc=f"fold {split.name}")
        np.add.at(confusion, (data.labels[split.test], out["pred"]), 1)
        folds.append({"fold": split.name, "accuracy": out["accuracy"], "n_train": len(train_idx),
                      "n_test": len(split.test), "seconds": time.perf_counter() - t0, "curve": out["curve"]})
        log.info("fold %s: %.4f (%.0f s)", split.name, out["accuracy"], folds[-1]["seconds"])
        if export is not None and k == 0:
            save_classifier(model, clips.class_names, export)
    accs = [f["accuracy"] for f in folds]
    return {"task": task.name, "protocol": task.protocol, "n_clips": len(clips), "class_names": list(clips.class_names),
            "accuracy": float(np.mean(accs)), "fold_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
            "folds": folds, "confusion": confusion.tolist(), "config": asdict(cfg)}


def _write_report(result: dict, model: str, out: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ajepa.evals.report import plot_confusion

    out.mkdir(parents=True, exist_ok=True)
    payload = {"model": model, **result}
    text = json.dumps(payload, indent=1) + "\n"
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    rows = "\n".join(f"| {f['fold']} | {100 * f['accuracy']:.1f} | {f['n_train']} | {f['n_test']} | {f['seconds']:.0f} |"
                     for f in result["folds"])
    md = (f"# Fine-tuning: {result['task']}\n\nModel `{model}`; {result['protocol']}; {result['n_clips']} clips.\n\n"
          f"**Accuracy {100 * result['accuracy']:.1f} ± {100 * result['fold_std']:.1f}** (mean ± std over folds)\n\n"
          "| fold | accuracy (%) | train clips | test clips | seconds |\n|---|---:|---:|---:|---:|\n" + rows +
          "\n\nRecipe: `" + json.dumps(result["config"]) + "`\n\nCommand: `python -m ajepa.evals.finetune " +
          " ".join(sys.argv[1:]) + "`\n")
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(md, encoding="utf-8"))
    plot_confusion(np.asarray(result["confusion"]), result["class_names"], f"{result['task']} (fine-tuned)",
                   out / "confusion.png")
    fig = Figure(figsize=(5.5, 3.5), layout="constrained")
    ax = fig.subplots()
    for f in result["folds"]:
        ax.plot([c["epoch"] for c in f["curve"]], [c["train_loss"] for c in f["curve"]], label=f"fold {f['fold']}")
    ax.set(xlabel="epoch", ylabel="training loss", title=f"{result['task']}: learning curves")
    ax.legend(fontsize=7)
    FigureCanvasAgg(fig).print_png(str(out / "learning_curves.png"))


def build_parser() -> argparse.ArgumentParser:
    """The ``ajepa.evals.finetune`` argument parser; every :class:`FinetuneConfig` field is a flag."""
    from ajepa.evals.suite import TASKS

    p = argparse.ArgumentParser(prog="python -m ajepa.evals.finetune", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--data-root", default=None, help="folder holding the task's data set (as for evals.suite)")
    p.add_argument("--model", required=True, help="export, training checkpoint, or random:MODEL_PATH[:SEED]")
    p.add_argument("--encoder", choices=("target", "context"), default=None)
    p.add_argument("--folds", type=int, default=5, help="folds for tasks without official ones")
    p.add_argument("--out", required=True)
    p.add_argument("--export", default=None, help="save the first fold's fine-tuned model here")
    p.add_argument("--no-progress", action="store_true")
    for f in fields(FinetuneConfig):
        flag, value, help_ = "--" + f.name.replace("_", "-"), f.default, f"{f.metadata['help']} (default: {f.default})"
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=f.metadata["help"])
        else:
            p.add_argument(flag, type=type(value), default=value, help=help_)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Read the task, fine-tune on each fold, write the report."""
    from ajepa.evals.suite import load_tasks, resolve_member

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = FinetuneConfig(**{k: getattr(args, k) for k in asdict(FinetuneConfig())})
    torch.set_num_threads(max(1, torch.get_num_threads()))
    (_, task), = load_tasks([args.task], args.data_root, seed=cfg.seed, folds=args.folds).values()
    _, emb = resolve_member(args.model, device="cpu", seed=cfg.seed, encoder=args.encoder)
    embedder = getattr(emb, "embedder", None)
    if embedder is None:
        print(f"error: --model {args.model!r} has no encoder to fine-tune (use an export, a checkpoint or random:...)",
              file=sys.stderr)
        return 2
    result = run_finetune(task, embedder, cfg, progress=not args.no_progress, export=args.export)
    _write_report(result, args.model, Path(args.out))
    print(f"{args.task}: {100 * result['accuracy']:.1f} ± {100 * result['fold_std']:.1f} "
          f"({len(result['folds'])} folds); report: {Path(args.out) / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
