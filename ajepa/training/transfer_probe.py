"""A transfer probe during training: the accuracy of a linear probe on a small labelled set, every N steps.

The effective rank says whether the embeddings collapse; it does not say whether they stay useful. Runs on the
shared corpus kept a high rank while their transfer fell by 8 points (docs/RESULTS.md), so the trainer can also
probe a labelled set the run does not train on (``trainer.probe.manifest``) and log ``probe_accuracy``. The probe
is cheap and cross-validated on a few hundred clips: a monitor of the trend, not a benchmark figure
(``python -m ajepa.evals.suite`` gives those). ``python -m ajepa.evals.manifest`` writes a manifest from an evaluation task.
"""

from __future__ import annotations

import copy
import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ajepa.errors import ConfigError
from ajepa.extras import require
from ajepa.training.config import ProbeConfig
from ajepa.features.audio import load_audio
from ajepa.features.logmel import LogMelFrontend
from ajepa.inference import Embedder
from ajepa.models import ViTEncoder

__all__ = ["ProbeSet", "TransferProbe", "read_probe_manifest"]


@dataclass
class ProbeSet:
    """A labelled list of files: ``paths``, ``labels (N,)`` int64, ``groups (N,)`` str (kept in one fold)."""

    paths: list[str]
    labels: np.ndarray
    groups: np.ndarray


def read_probe_manifest(path: str | os.PathLike) -> ProbeSet:
    """Read a CSV with columns ``path``, ``label`` and optionally ``group`` (speaker or source recording).

    Relative paths are relative to the CSV's folder. Raises :class:`ConfigError` for a missing file or column, a
    listed file that does not exist, or fewer than two labels.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"trainer.probe.manifest: no such file {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise ConfigError(f"{path}: a probe manifest needs a header with columns 'path' and 'label' "
                          f"(and optionally 'group'), got {sorted(rows[0]) if rows else 'no rows'}")
    paths = [str((path.parent / r["path"]).resolve()) if not os.path.isabs(r["path"]) else r["path"] for r in rows]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ConfigError(f"{path}: {len(missing)} of {len(paths)} listed files are missing, e.g. {missing[0]}")
    names = sorted({r["label"] for r in rows})
    if len(names) < 2:
        raise ConfigError(f"{path}: a probe needs at least two labels, got {names}")
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[r["label"]] for r in rows], dtype=np.int64)
    groups = np.array([r.get("group") or f"file{i}" for i, r in enumerate(rows)])
    return ProbeSet(paths, labels, groups)


class TransferProbe:
    """Cross-validated logistic-regression accuracy of an encoder's clip embeddings on a :class:`ProbeSet`.

    At most ``max_clips`` files (a fixed random subset of ``seed``) are decoded once, at construction. Each
    :meth:`measure` embeds them with a copy of the encoder (the training model and its RNG are left alone) and
    fits standardised L2 logistic regression (scikit-learn, ``C = 0.1``) on ``folds`` folds grouped by
    ``group``.
    """

    def __init__(self, cfg: ProbeConfig, probe_set: ProbeSet, sample_rate: int, seed: int = 0) -> None:
        self.cfg = cfg
        keep = np.sort(np.random.default_rng(seed).permutation(len(probe_set.paths))[: cfg.max_clips])
        self.labels, self.groups = probe_set.labels[keep], probe_set.groups[keep]
        if len(np.unique(self.groups)) < cfg.folds or len(np.unique(self.labels)) < 2:
            raise ConfigError(f"trainer.probe: {len(keep)} clips in {len(np.unique(self.groups))} groups and "
                              f"{len(np.unique(self.labels))} labels cannot make {cfg.folds} folds")
        self.sample_rate = int(sample_rate)
        self.waveforms = [load_audio(probe_set.paths[i], target_sr=self.sample_rate).numpy() for i in keep]

    def measure(self, encoder: ViTEncoder, frontend: LogMelFrontend, clip_seconds: float) -> float:
        """The probe's mean accuracy over folds for ``encoder`` read out with ``frontend`` in windows of
        ``clip_seconds``."""
        require("sklearn", "train", "scikit-learn")
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold, cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        device = next(encoder.parameters()).device
        embedder = Embedder(copy.deepcopy(frontend), copy.deepcopy(encoder), clip_seconds=clip_seconds,
                            device=device, bf16=False, average_layers=self.cfg.average_layers,
                            pooling=self.cfg.pooling)
        with torch.random.fork_rng(devices=[]):
            feats = embedder.embed(self.waveforms, sr=self.sample_rate)
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000, tol=1e-3))
        scores = cross_val_score(clf, feats, self.labels, groups=self.groups, cv=GroupKFold(self.cfg.folds))
        return float(np.mean(scores))
