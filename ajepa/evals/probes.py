"""Probes on frozen clip embeddings, and cross-validation over predefined folds.

Every probe sees pooled clip embeddings ``(B, D)`` and integer labels ``0..C-1``. Feature
standardisation always uses statistics of the probe's *training* data only, so nothing about the test
split leaks into the classifier.

- :class:`LinearProbe` follows the EVAR linear-evaluation protocol: standardise, one ``nn.Linear``
  trained with Adam on mini-batches, early stopping on a stratified validation split carved from the
  training data, the best-validation weights kept.
- :class:`MLPProbe` is the HEAR-style variant: one hidden layer (1024 units) with dropout, same training.
- :class:`KNNProbe`: cosine k-nearest-neighbours with majority vote (ties go to the class with the larger
  summed similarity).
- :class:`LogRegProbe` (in :mod:`ajepa.evals.logistic`, re-exported here): scikit-learn multinomial logistic regression at a fixed ``C``, for comparisons with
  classical log-mel-statistics numbers.
- :class:`LogRegCVProbe` (``logreg-cv``), the *strong* probe: the same logistic regression with ``C`` chosen by
  cross-validation inside the training part, folds grouped like the outer ones (speaker, source clip). It fits
  each encoder's features as well as a linear read-out can, so it is the fair probe for baselines of many
  dimensions (a random encoder's ``freqcat+std`` features), which the early-stopped Adam probe under-fits.

All randomness comes from an explicit ``seed`` (``torch.Generator`` / ``numpy.random.default_rng``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ajepa.evals.logistic import LogRegCVProbe, LogRegProbe
from ajepa.evals.probe_base import Probe, ProbeResult, Standardizer, accuracy, check_features

__all__ = [
    "ProbeResult",
    "Probe",
    "Standardizer",
    "stratified_split",
    "LinearProbe",
    "MLPProbe",
    "KNNProbe",
    "LogRegProbe",
    "LogRegCVProbe",
    "PROBES",
    "Split",
    "splits_from_folds",
    "cross_validate",
    "make_probe",
]


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, val), taking about ``fraction`` of each class into val.

    A class with a single example stays entirely in train (it cannot be represented in both). Raises
    ``ValueError`` when no class has two examples, since early stopping would then have nothing to watch.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    if len(val_idx) == 0:
        raise ValueError("too few training examples to carve a validation split (every class has < 2 clips)")
    return np.sort(np.concatenate(train)).astype(np.int64), val_idx


class _TorchProbe:
    """Shared training loop of the linear and MLP probes (Adam, mini-batches, early stopping)."""

    name = "torch"

    def __init__(
        self,
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        max_epochs: int = 500,
        patience: int = 30,
        min_delta: float = 1e-3,
        val_fraction: float = 0.1,
        device: str | torch.device = "cpu",
        num_threads: int | None = 1,
    ) -> None:
        """``num_threads`` caps torch's CPU threads while training (restored afterwards): mini-batch ops
        of a probe are far too small to gain from intra-op parallelism, and on busy cores extra threads
        make them tens of times slower. ``None`` keeps torch's setting."""
        if batch_size < 1 or max_epochs < 1 or patience < 1:
            raise ValueError("batch_size, max_epochs and patience must be >= 1")
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.min_delta = min_delta
        self.device = torch.device(device)
        self.num_threads = num_threads

    def _build(self, in_dim: int, n_classes: int, generator: torch.Generator) -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def _init_from(module: nn.Module, generator: torch.Generator) -> None:
        # nn.Linear's own init draws from the global RNG; redraw from our generator for reproducibility
        # without touching global state.
        for m in module.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / np.sqrt(m.in_features)
                with torch.no_grad():
                    m.weight.copy_(torch.rand(m.weight.shape, generator=generator) * 2 * bound - bound)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=generator) * 2 * bound - bound)

    def fit_predict(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        *,
        seed: int,
        val: tuple[np.ndarray, np.ndarray] | None = None,
        groups: np.ndarray | None = None,
    ) -> ProbeResult:
        """See :class:`Probe` (``groups`` is unused). Labels must be integers in ``0..C-1``."""
        before = torch.get_num_threads()
        if self.num_threads is not None and self.device.type == "cpu":
            torch.set_num_threads(self.num_threads)
        try:
            return self._fit_predict(x_train, y_train, x_test, y_test, seed=seed, val=val)
        finally:
            torch.set_num_threads(before)

    def _fit_predict(self, x_train, y_train, x_test, y_test, *, seed: int, val) -> ProbeResult:
        x_train = check_features(x_train, y_train, "training features")
        x_test = check_features(x_test, y_test, "test features")
        y_train = np.asarray(y_train, dtype=np.int64)
        y_test = np.asarray(y_test, dtype=np.int64)
        if val is None:
            tr, va = stratified_split(y_train, self.val_fraction, seed)
            x_val, y_val = x_train[va], y_train[va]
            x_fit, y_fit = x_train[tr], y_train[tr]
        else:
            x_val = check_features(val[0], val[1], "validation features")
            y_val = np.asarray(val[1], dtype=np.int64)
            x_fit, y_fit = x_train, y_train
        # Statistics from the data the weights are fitted on only; val and test are transformed with them.
        scaler = Standardizer().fit(x_fit)
        n_classes = int(max(y_fit.max(), y_val.max(), y_test.max() if len(y_test) else 0)) + 1

        gen = torch.Generator().manual_seed(seed)
        model = self._build(x_fit.shape[1], n_classes, gen).to(self.device)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        xf = torch.from_numpy(scaler.transform(x_fit)).to(self.device)
        yf = torch.from_numpy(y_fit).to(self.device)
        xv = torch.from_numpy(scaler.transform(x_val)).to(self.device)
        yv = torch.from_numpy(y_val).to(self.device)

        best_loss = float("inf")
        best = (-1.0, float("inf"))  # (val accuracy, val loss): higher accuracy, then lower loss wins
        best_state, best_epoch, stale = {k: v.detach().clone() for k, v in model.state_dict().items()}, 0, 0
        for epoch in range(self.max_epochs):
            model.train()
            order = torch.randperm(len(xf), generator=gen).to(self.device)
            for start in range(0, len(order), self.batch_size):
                b = order[start : start + self.batch_size]
                opt.zero_grad(set_to_none=True)
                loss_fn(model(xf[b]), yf[b]).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                logits = model(xv)
                v_loss = float(loss_fn(logits, yv))
                v_acc = float((logits.argmax(1) == yv).float().mean())
            # Patience restarts when validation accuracy rises or the loss drops by more than min_delta
            # (on separable data the loss creeps down for ever). The best weights are those with the
            # highest validation accuracy, the lower loss breaking ties.
            improved = v_acc > best[0] or v_loss < best_loss - self.min_delta
            stale = 0 if improved else stale + 1
            best_loss = min(best_loss, v_loss)
            if (v_acc, -v_loss) > (best[0], -best[1]):
                best, best_epoch = (v_acc, v_loss), epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if stale >= self.patience:
                break
        model.load_state_dict(best_state)
        model.eval()
        with torch.no_grad():
            xt = torch.from_numpy(scaler.transform(x_test)).to(self.device)
            pred = model(xt).argmax(1).cpu().numpy().astype(np.int64)
        return ProbeResult(accuracy(pred, y_test), pred,
                           {"best_epoch": best_epoch, "val_accuracy": best[0], "val_loss": best[1]})


class LinearProbe(_TorchProbe):
    """EVAR-style linear probe: standardise (train stats), one ``nn.Linear``, Adam, early stopping."""

    name = "linear"

    def _build(self, in_dim: int, n_classes: int, generator: torch.Generator) -> nn.Module:
        model = nn.Linear(in_dim, n_classes)
        self._init_from(model, generator)
        return model


class MLPProbe(_TorchProbe):
    """HEAR-style MLP probe: Linear(D, hidden) -> ReLU -> Dropout -> Linear(hidden, C), same training."""

    name = "mlp"

    def __init__(self, *, hidden: int = 1024, dropout: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = hidden
        self.dropout = dropout

    def _build(self, in_dim: int, n_classes: int, generator: torch.Generator) -> nn.Module:
        model = nn.Sequential(
            nn.Linear(in_dim, self.hidden), nn.ReLU(), nn.Dropout(self.dropout), nn.Linear(self.hidden, n_classes)
        )
        self._init_from(model, generator)
        return model

    def fit_predict(self, x_train, y_train, x_test, y_test, *, seed: int, val=None, groups=None) -> ProbeResult:
        """See :class:`Probe` (``groups`` is unused)."""
        # nn.Dropout draws from the global RNG; fork_rng seeds it for reproducible masks and restores the
        # caller's RNG state afterwards, so no global seeding leaks out.
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            return super().fit_predict(x_train, y_train, x_test, y_test, seed=seed, val=val)


class KNNProbe:
    """Cosine k-nearest-neighbour classifier with majority vote.

    Vote ties are broken by the summed cosine similarity of each tied class's neighbours (closer wins).
    ``standardize`` z-scores with training statistics before the cosine, so that dimensions with a large
    offset (e.g. log-mel means) do not dominate the angle.
    """

    name = "knn"

    def __init__(self, k: int = 5, standardize: bool = True, chunk: int = 1024) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.standardize = standardize
        self.chunk = chunk

    def fit_predict(self, x_train, y_train, x_test, y_test, *, seed: int = 0, val=None, groups=None) -> ProbeResult:
        """See :class:`Probe`; ``seed``, ``val`` and ``groups`` are unused (kNN has no training randomness)."""
        x_train = check_features(x_train, y_train, "training features")
        x_test = check_features(x_test, y_test, "test features")
        y_train = np.asarray(y_train, dtype=np.int64)
        if self.standardize:
            scaler = Standardizer().fit(x_train)
            x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
        xtr = x_train / np.maximum(np.linalg.norm(x_train, axis=1, keepdims=True), 1e-12)
        xte = x_test / np.maximum(np.linalg.norm(x_test, axis=1, keepdims=True), 1e-12)
        k = min(self.k, len(xtr))
        n_classes = int(max(y_train.max(), np.max(y_test, initial=0))) + 1
        preds = []
        for s in range(0, len(xte), self.chunk):
            sim = xte[s : s + self.chunk] @ xtr.T  # (b, N_train)
            nn_idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            nn_sim = np.take_along_axis(sim, nn_idx, axis=1)
            nn_lab = y_train[nn_idx]
            votes = np.zeros((len(sim), n_classes))
            sims = np.zeros((len(sim), n_classes))
            rows = np.repeat(np.arange(len(sim)), k)
            np.add.at(votes, (rows, nn_lab.ravel()), 1)
            np.add.at(sims, (rows, nn_lab.ravel()), nn_sim.ravel())
            # Votes decide; the summed similarity, mapped into [0, 1), only separates tied vote counts.
            score = votes + (sims + k) / (2 * k + 1)
            score[votes == 0] = -np.inf
            preds.append(score.argmax(1))
        pred = np.concatenate(preds).astype(np.int64) if preds else np.zeros(0, np.int64)
        return ProbeResult(accuracy(pred, y_test), pred, {"k": k})


PROBES = ("linear", "knn", "mlp", "logreg", "logreg-cv")


def make_probe(name: str, *, device: str = "cpu", k: int = 5) -> Probe:
    """Build a probe by name, one of :data:`PROBES`: ``linear`` | ``knn`` | ``mlp`` | ``logreg`` | ``logreg-cv``."""
    if name == "linear":
        return LinearProbe(device=device)
    if name == "mlp":
        return MLPProbe(device=device)
    if name == "knn":
        return KNNProbe(k=k)
    if name == "logreg":
        return LogRegProbe()
    if name == "logreg-cv":
        return LogRegCVProbe()
    raise ValueError(f"unknown probe {name!r}; choose one of {', '.join(PROBES)}")


@dataclass
class Split:
    """Indices of one evaluation split. ``val`` is an explicit validation set (official lists), if any."""

    name: str
    train: np.ndarray
    test: np.ndarray
    val: np.ndarray | None = None


def splits_from_folds(folds: np.ndarray) -> list[Split]:
    """Leave-one-fold-out splits from a per-clip fold id array (each distinct id is a test fold once)."""
    folds = np.asarray(folds)
    ids = np.unique(folds)
    if len(ids) < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {len(ids)}")
    return [
        Split(str(f), np.flatnonzero(folds != f).astype(np.int64), np.flatnonzero(folds == f).astype(np.int64))
        for f in ids
    ]


def cross_validate(
    features: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray | Sequence[Split],
    probe: Probe,
    seed: int,
    *,
    groups: np.ndarray | None = None,
    check_groups: bool = True,
    n_classes: int | None = None,
) -> dict:
    """Train ``probe`` once per split with the test part held out, and summarise.

    ``folds`` is either a per-clip fold id array (leave-one-fold-out) or a list of :class:`Split`.
    ``groups`` (e.g. speaker ids) go to the probe with the training clips (for grouped inner
    cross-validation) and, with ``check_groups``, every split is checked to share no group between its
    train/val and test parts; a violation raises ``ValueError`` rather than reporting a leaky number.
    Split ``i`` trains with seed ``seed + i``.

    Returns ``dict(acc_mean, acc_std, per_fold, confusion, predictions, n_folds)``: ``acc_std`` is the
    sample standard deviation over splits (0 for a single split); ``confusion`` is the
    ``(C, C)`` count matrix (rows true, columns predicted) summed over test parts; ``predictions`` holds
    each clip's test prediction (-1 for clips never tested).
    """
    x = check_features(features, labels)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) and y.min() < 0:
        raise ValueError("labels must be integers in 0..C-1")
    splits = splits_from_folds(folds) if isinstance(folds, np.ndarray) else list(folds)
    if not splits:
        raise ValueError("no splits to evaluate")
    c = int(n_classes if n_classes is not None else y.max() + 1)
    confusion = np.zeros((c, c), dtype=np.int64)
    predictions = np.full(len(y), -1, dtype=np.int64)
    per_fold = []
    for i, sp in enumerate(splits):
        fit_idx = sp.train if sp.val is None else np.concatenate([sp.train, sp.val])
        if np.intersect1d(fit_idx, sp.test).size:
            raise ValueError(f"split {sp.name}: a clip is in both the training and test parts")
        if groups is not None and check_groups:
            shared = np.intersect1d(np.asarray(groups)[fit_idx], np.asarray(groups)[sp.test])
            if shared.size:
                raise ValueError(f"split {sp.name}: {shared.size} group(s) in both train and test, e.g. {shared[0]!r}")
        val = None if sp.val is None else (x[sp.val], y[sp.val])
        train_groups = None if groups is None else np.asarray(groups)[sp.train]
        res = probe.fit_predict(x[sp.train], y[sp.train], x[sp.test], y[sp.test], seed=seed + i, val=val,
                                groups=train_groups)
        np.add.at(confusion, (y[sp.test], res.predictions), 1)
        predictions[sp.test] = res.predictions
        per_fold.append(
            {"fold": sp.name, "accuracy": res.accuracy, "n_train": int(len(sp.train)),
             "n_val": int(0 if sp.val is None else len(sp.val)), "n_test": int(len(sp.test)), **res.info}
        )
    accs = np.array([f["accuracy"] for f in per_fold])
    return {
        "acc_mean": float(accs.mean()),
        "acc_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
        "per_fold": per_fold,
        "confusion": confusion,
        "predictions": predictions,
        "n_folds": len(splits),
    }
