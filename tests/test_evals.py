"""Tests of the evaluation package: probes, cross-validation, readers, cache, downloader, CLIs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ajepa.evals import download as dl
from ajepa.evals.cache import cache_key, cached_embeddings
from ajepa.evals.datasets import (
    grouped_folds,
    read_esc50,
    read_fsdd,
    read_speech_commands,
    speech_commands_speaker,
)
from ajepa.evals.probes import (
    KNNProbe,
    LinearProbe,
    LogRegProbe,
    MLPProbe,
    ProbeResult,
    Split,
    Standardizer,
    cross_validate,
    stratified_split,
)

SR = 16000


# ----------------------------------------------------------------------------- helpers
def _tone(rng: np.random.Generator, freq: float, seconds: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = rng.uniform(0.3, 0.6) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _write(path: Path, x: np.ndarray, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="PCM_16")


def _clusters(n_per: int, n_classes: int, dim: int, seed: int, sep: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * sep
    y = np.repeat(np.arange(n_classes), n_per)
    return (centres[y] + rng.standard_normal((len(y), dim))).astype(np.float32), y


def make_esc50(root: Path, per_class_fold: int = 2) -> Path:
    """ESC-50 layout: 3 classes (targets 0, 10, 41; 41 not in ESC-10) x 5 folds."""
    rng = np.random.default_rng(0)
    classes = {0: ("dog", True, 300.0), 10: ("rain", True, 1200.0), 41: ("chainsaw", False, 3000.0)}
    rows = []
    for fold in range(1, 6):
        for target, (name, esc10, freq) in classes.items():
            for j in range(per_class_fold):
                src = f"{fold}{target:02d}{j}"
                fn = f"{fold}-{src}-A-{target}.wav"
                _write(root / "audio" / fn, _tone(rng, freq * (1 + 0.05 * j)))
                rows.append([fn, fold, target, name, str(esc10), src, "A"])
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


SPEAKERS = [f"{i:08x}" for i in range(0xA0, 0xA8)]
WORDS_FULL = ["yes", "no", "cat", "dog"]  # two command words, two "unknown" words


def make_sc_full(root: Path) -> Path:
    """Full-release layout: word folders, list files (split by speaker), _background_noise_."""
    rng = np.random.default_rng(1)
    val, test = [], []
    for wi, w in enumerate(WORDS_FULL):
        for si, spk in enumerate(SPEAKERS):
            rel = f"{w}/{spk}_nohash_0.wav"
            _write(root / rel, _tone(rng, 400.0 * (wi + 1), seconds=0.2))
            if si == 6:
                val.append(rel)
            elif si == 7:
                test.append(rel)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    for name in ("white_noise", "pink_noise"):
        _write(root / "_background_noise_" / f"{name}.wav", (0.1 * rng.standard_normal(12 * SR)).astype(np.float32))
    return root


SC12 = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def make_sc_archive(root: Path, n_speakers: int = 6) -> Path:
    """Test-set archive layout: 12 label folders, _unknown_ with word prefixes, _silence_ with numbers."""
    rng = np.random.default_rng(2)
    spk = [f"{i:08x}" for i in range(0xB0, 0xB0 + n_speakers)]
    for ci, c in enumerate(SC12):
        for s in spk:
            for n in range(2):
                _write(root / c / f"{s}_nohash_{n}.wav", _tone(rng, 200.0 + 150 * ci, seconds=0.2))
    for s in spk:
        for word in ("bed", "bird"):
            _write(root / "_unknown_" / f"{word}_{s}_nohash_0.wav", _tone(rng, 3500.0, seconds=0.2))
    for n in range(10):
        _write(root / "_silence_" / f"{1000 + n}.wav", (0.01 * rng.standard_normal(int(0.2 * SR))).astype(np.float32))
    return root


class FakeEmbedder:
    """Deterministic stand-in model: a coarse magnitude spectrum of the file; counts its calls."""

    sample_rate = SR

    def __init__(self, key: str = "fake:v1", bins: int = 24) -> None:
        self.key = key
        self.bins = bins
        self.calls = 0
        self.files_embedded = 0

    def embed(self, paths, *, pooling="mean", batch_size=32, progress=True):
        self.calls += 1
        self.files_embedded += len(paths)
        out = []
        for p in paths:
            x, _ = sf.read(p, dtype="float32")
            spec = np.abs(np.fft.rfft(x, n=2048))
            edges = np.linspace(0, len(spec), self.bins, endpoint=False).astype(int)
            out.append(np.log1p(np.add.reduceat(spec, edges)))
        return np.stack(out).astype(np.float32)


# ----------------------------------------------------------------------------- probes
def test_linear_probe_separates_gaussian_clusters() -> None:
    xa, ya = _clusters(90, 4, 16, seed=0)
    perm = np.random.default_rng(0).permutation(len(ya))
    x, y, xt, yt = xa[perm[:240]], ya[perm[:240]], xa[perm[240:]], ya[perm[240:]]
    res = LinearProbe(max_epochs=100).fit_predict(x, y, xt, yt, seed=0)
    assert res.accuracy >= 0.98
    assert res.predictions.shape == (len(yt),)
    # Fixed seed -> identical result; the probe does not touch global RNG state.
    again = LinearProbe(max_epochs=100).fit_predict(x, y, xt, yt, seed=0)
    np.testing.assert_array_equal(res.predictions, again.predictions)


def test_mlp_and_knn_and_logreg_separate_clusters() -> None:
    x, y = _clusters(40, 3, 8, seed=1)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:90], perm[90:]
    for probe in (MLPProbe(hidden=64, max_epochs=60), KNNProbe(k=5), LogRegProbe()):
        assert probe.fit_predict(x[tr], y[tr], x[te], y[te], seed=0).accuracy >= 0.95, probe.name


def test_knn_tie_break_prefers_closer_class() -> None:
    # k=2 with one neighbour of each class: a 1-1 vote; the class of the more similar neighbour wins.
    x_train = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    y_train = np.array([0, 1])
    x_test = np.array([[1.0, 0.2], [0.2, 1.0]], dtype=np.float32)
    res = KNNProbe(k=2, standardize=False).fit_predict(x_train, y_train, x_test, np.array([0, 1]), seed=0)
    np.testing.assert_array_equal(res.predictions, [0, 1])


def test_standardisation_uses_training_statistics_only() -> None:
    # Label = sign of x0 on train. The test split is shifted far to the positive side (all class 1);
    # standardising with test statistics would re-centre it and flip about half of the predictions.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    xt = np.stack([rng.uniform(2.0, 3.0, 50), rng.standard_normal(50)], 1).astype(np.float32)
    yt = np.ones(50, dtype=np.int64)
    for probe in (LinearProbe(lr=1e-2, max_epochs=100), KNNProbe(k=3), LogRegProbe()):
        assert probe.fit_predict(x, y, xt, yt, seed=0).accuracy == 1.0, probe.name
    s = Standardizer().fit(x)
    np.testing.assert_allclose(s.transform(x).mean(0), 0, atol=1e-5)
    assert abs(float(s.transform(xt)[:, 0].mean())) > 1.5


def test_stratified_split_is_seeded_disjoint_and_covers_classes() -> None:
    y = np.repeat(np.arange(4), 10)
    tr, va = stratified_split(y, 0.2, seed=0)
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == len(y)
    assert sorted(np.bincount(y[va]).tolist()) == [2, 2, 2, 2]
    np.testing.assert_array_equal(va, stratified_split(y, 0.2, seed=0)[1])
    assert not np.array_equal(va, stratified_split(y, 0.2, seed=1)[1])
    with pytest.raises(ValueError):
        stratified_split(np.arange(5), 0.2, seed=0)  # every class has one clip


class SpyProbe:
    """Records the indices it was trained/tested on (column 0 of the features holds the clip index)."""

    name = "spy"

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def fit_predict(self, x_train, y_train, x_test, y_test, *, seed, val=None, groups=None) -> ProbeResult:
        self.calls.append((x_train[:, 0].astype(int), x_test[:, 0].astype(int)))
        return ProbeResult(float(np.mean(y_test == 0)), np.zeros(len(y_test), dtype=np.int64))


def test_cross_validate_holds_out_each_fold_and_speaker(tmp_path: Path) -> None:
    clips = read_speech_commands(make_sc_archive(tmp_path / "sc"))
    folds = grouped_folds(clips.labels, clips.groups, k=3, seed=0)
    x = np.stack([np.arange(len(clips)), np.zeros(len(clips))], 1).astype(np.float32)
    spy = SpyProbe()
    res = cross_validate(x, clips.labels, folds, spy, seed=0, groups=clips.groups)
    assert res["n_folds"] == 3 and len(spy.calls) == 3
    tested = np.concatenate([te for _, te in spy.calls])
    assert sorted(tested.tolist()) == list(range(len(clips)))  # every clip tested exactly once
    for train, test in spy.calls:
        assert len(np.unique(folds[test])) == 1 and folds[test][0] not in set(folds[train])
        assert set(clips.groups[train]).isdisjoint(clips.groups[test])
    assert res["confusion"].sum() == len(clips)
    # A leaky split (one speaker on both sides) is refused rather than scored.
    leaky = [Split("leaky", np.arange(0, len(clips), 2), np.arange(1, len(clips), 2))]
    with pytest.raises(ValueError, match="group"):
        cross_validate(x, clips.labels, leaky, spy, seed=0, groups=clips.groups)


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # never write into the real ~/.cache


# ----------------------------------------------------------------------------- readers
def test_read_esc50_esc10_reindexes_and_reports_missing(tmp_path: Path) -> None:
    root = make_esc50(tmp_path / "esc")
    full = read_esc50(root)
    assert full.class_names == ["dog", "rain", "chainsaw"] and len(full) == 30
    esc10 = read_esc50(root, esc10=True)
    assert esc10.class_names == ["dog", "rain"] and sorted(set(esc10.labels.tolist())) == [0, 1]
    assert sorted(set(esc10.folds.tolist())) == [1, 2, 3, 4, 5] and len(esc10) == 20
    for f in sorted((root / "audio").glob("1-*"))[:3]:
        f.unlink()
    with pytest.raises(FileNotFoundError, match="3 of 30"):
        read_esc50(root)


def test_speech_commands_speaker_ids() -> None:
    assert speech_commands_speaker("yes/0a7c2a8d_nohash_1.wav") == "0a7c2a8d"
    assert speech_commands_speaker("_unknown_/backward_0c540988_nohash_0.wav") == "0c540988"
    with pytest.raises(ValueError):
        speech_commands_speaker("_silence_/1024.wav")


def test_read_speech_commands_full_layout_12_and_35(tmp_path: Path) -> None:
    root = make_sc_full(tmp_path / "sc")
    c35 = read_speech_commands(root, "35")
    assert c35.class_names == sorted(WORDS_FULL) and len(c35) == 32
    assert (c35.split == "test").sum() == 4 and (c35.split == "validation").sum() == 4
    sil_dir = tmp_path / "silence"
    c12 = read_speech_commands(root, "12", seed=0, silence_dir=sil_dir)
    assert c12.class_names[-2:] == ["_unknown_", "_silence_"]
    unknown = c12.labels == c12.class_names.index("_unknown_")
    assert all(Path(p).parent.name in ("cat", "dog") for p in np.array(c12.paths)[unknown])
    silence = np.flatnonzero(c12.labels == c12.class_names.index("_silence_"))
    # As many silence clips per split as the mean command-word class: train 6*2/10 -> 1, val/test 2/10 -> 0.
    n_known = {s: int(((c12.split == s) & (c12.labels < 10)).sum()) for s in ("train", "validation", "test")}
    for s, n in n_known.items():
        assert int((c12.split[silence] == s).sum()) == round(n / 10)
    x, sr = sf.read(c12.paths[silence[0]])
    assert len(x) == sr  # 1 s cuts
    # Deterministic and written once: re-reading reuses the same files untouched.
    mtimes = {p: os.stat(c12.paths[p]).st_mtime_ns for p in silence}
    again = read_speech_commands(root, "12", seed=0, silence_dir=sil_dir)
    assert again.paths == c12.paths
    assert all(os.stat(c12.paths[p]).st_mtime_ns == m for p, m in mtimes.items())
    many = read_speech_commands(root, "12", seed=0, silence_dir=tmp_path / "s2", silence_per_split=3)
    assert int((many.labels == 11).sum()) == 9
    # Official lists are speaker-disjoint, silence groups are per split: no group crosses splits.
    for a, b in (("train", "test"), ("train", "validation"), ("validation", "test")):
        assert set(many.groups[many.split == a]).isdisjoint(many.groups[many.split == b])


def test_read_speech_commands_test_archive_and_grouped_folds(tmp_path: Path) -> None:
    clips = read_speech_commands(make_sc_archive(tmp_path / "sca"))
    assert clips.class_names == SC12 + ["_unknown_", "_silence_"] and clips.split is None
    sil = clips.labels == 11
    assert len(set(clips.groups[sil])) == int(sil.sum())  # each silence clip its own group
    assert set(clips.groups[clips.labels == 10]) == set(clips.groups[clips.labels == 0])  # word prefix stripped
    folds = grouped_folds(clips.labels, clips.groups, k=3, seed=0)
    for f in range(3):
        assert set(clips.groups[folds == f]).isdisjoint(clips.groups[folds != f])
    with pytest.raises(ValueError, match="35-class"):
        read_speech_commands(tmp_path / "sca", "35")


def test_read_fsdd(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for d in range(3):
        for spk in ("jackson", "theo"):
            for i in (0, 7):
                _write(tmp_path / "recordings" / f"{d}_{spk}_{i}.wav", _tone(rng, 500.0 * (d + 1)), sr=8000)
    clips = read_fsdd(tmp_path)
    assert len(clips) == 12 and clips.class_names == ["0", "1", "2"]
    assert sorted(set(clips.groups.tolist())) == ["jackson", "theo"]
    assert ((clips.split == "test") == np.array([Path(p).stem.endswith("_0") for p in clips.paths])).all()


# ----------------------------------------------------------------------------- cache
def test_cache_hit_avoids_recomputing_and_tracks_file_changes(tmp_path: Path) -> None:
    root = make_esc50(tmp_path / "esc", per_class_fold=1)
    paths = read_esc50(root).paths
    emb = FakeEmbedder()
    first = cached_embeddings(emb, paths, cache_dir=tmp_path / "cache", progress=False)
    assert emb.calls == 1
    rev = cached_embeddings(emb, paths[::-1], cache_dir=tmp_path / "cache", progress=False)
    assert emb.calls == 1  # same file set in another order: served from the cache, rows follow the request
    np.testing.assert_array_equal(rev, first[::-1])
    npz = next((tmp_path / "cache").glob("*.npz"))
    with np.load(npz, allow_pickle=False) as z:
        assert z["embeddings"].shape == first.shape
    assert json.loads(npz.with_suffix(".json").read_text())["model"] == "fake:v1"
    cached_embeddings(FakeEmbedder("fake:v2"), paths, cache_dir=tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # another model key, another entry
    _write(Path(paths[0]), _tone(np.random.default_rng(5), 900.0, seconds=0.5))
    cached_embeddings(emb, paths, cache_dir=tmp_path / "cache", progress=False)
    assert emb.calls == 2  # a changed file invalidates the entry
    assert cache_key("a", paths, "mean", SR) != cache_key("a", paths, "mean+max", SR)


def test_logmel_stats_ignore_padding_and_batching(tmp_path: Path) -> None:
    from ajepa.evals.baselines import LogMelStatsEmbedder

    rng = np.random.default_rng(4)
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    _write(short, _tone(rng, 500.0, seconds=0.2))
    _write(long, _tone(rng, 2500.0, seconds=0.9))
    stats = LogMelStatsEmbedder()
    together = stats.embed([str(short), str(long)], batch_size=2, progress=False)
    alone = np.concatenate([stats.embed([str(p)], batch_size=1, progress=False) for p in (short, long)])
    assert together.shape == (2, 256)
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-4)  # zero padding never enters the stats
    assert not np.allclose(together[0], together[1], atol=1e-2)


# ----------------------------------------------------------------------------- CLIs
def _argv(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--cache-dir", str(cache), "--no-progress", *extra]


def test_cli_esc50_end_to_end_logmel_and_random_model(tmp_path: Path) -> None:
    from ajepa.evals import esc50
    from ajepa.evals.baselines import random_init_embedder

    root = make_esc50(tmp_path / "esc")
    out = tmp_path / "out"
    argv = _argv(root, out, tmp_path / "cache", "--esc10", "--model", "random:mini", "--baselines", "logmel",
                 "--probe", "linear,knn", "--batch-size", "8", "--pooling", "freqcat+std")
    assert esc50.main(argv) == 0
    res = json.loads((out / "results.json").read_text())["results"]
    assert {(r["model"], r["probe"]) for r in res} == {
        (m, p) for m in ("random-init:mini", "logmel-stats") for p in ("linear", "knn")}
    for r in res:
        assert r["n_folds"] == 5 and r["n_clips"] == 20 and np.array(r["confusion"]).sum() == 20
    logmel = next(r for r in res if r["model"] == "logmel-stats" and r["probe"] == "linear")
    assert logmel["acc_mean"] >= 0.9  # two tones an octave+ apart: trivially separable by band energies
    md = (out / "results.md").read_text()
    assert "logmel-stats" in md and "leave-one-fold-out" in md
    assert (out / "confusion_esc10_linear.png").stat().st_size > 0
    assert not (out / "confusion_esc10_linear.png").with_name("confusion_logmel.png").exists()
    n_cached = len(list((tmp_path / "cache").glob("*.npz")))
    assert n_cached == 2
    # --pooling reaches the encoder and the cache entry; the log-mel baseline keeps its own statistics.
    entries = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*.json")]
    info = {e["model"].split(":")[0]: e for e in entries}
    assert info["logmel-stats"]["pooling"] == "mean"
    assert info["random-init"]["pooling"] == "freqcat+std"
    assert info["random-init"]["dim"] == random_init_embedder("mini").embedder.pooled_dim("freqcat+std")
    assert esc50.main(argv) == 0  # second run reads the cache
    assert len(list((tmp_path / "cache").glob("*.npz"))) == n_cached
    assert json.loads((out / "results.json").read_text())["meta"]["average_layers"] == 1
    # --average-layers reaches the encoder, its cache identity and the report; the log-mel entry is reused.
    assert esc50.main([*argv, "--average-layers", "all"]) == 0
    assert json.loads((out / "results.json").read_text())["meta"]["average_layers"] == "all"
    entries = {e["model"]: e for e in (json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*.json"))}
    assert len(entries) == n_cached + 1
    depth = random_init_embedder("mini").embedder.encoder_config.depth  # "all": every block and the patch embedding
    final, = (e for k, e in entries.items() if k.startswith("random-init") and ":avg" not in k)
    every = entries[final["model"] + f":avg{depth + 1}"]
    with np.load(tmp_path / "cache" / f"{final['key']}.npz") as a, \
            np.load(tmp_path / "cache" / f"{every['key']}.npz") as b:
        assert a["embeddings"].shape == b["embeddings"].shape and not np.allclose(a["embeddings"], b["embeddings"])


def test_cli_speech_commands_protocols_with_fake_model(tmp_path: Path) -> None:
    from ajepa.evals import speech_commands

    fake = FakeEmbedder()
    kw = dict(resolve=lambda spec, **_: ("fake", fake), resolve_baseline=lambda *a, **k: ("fake-b", FakeEmbedder("b")))
    out = tmp_path / "out_a"
    argv = _argv(make_sc_archive(tmp_path / "sca"), out, tmp_path / "cache", "--model", "x", "--folds", "3",
                 "--probe", "knn")
    assert speech_commands.main(argv, **kw) == 0
    (r,) = json.loads((out / "results.json").read_text())["results"]
    assert r["n_folds"] == 3 and "grouped by speaker" in r["protocol"] and r["acc_mean"] > 0.5
    out = tmp_path / "out_f"
    argv = _argv(make_sc_full(tmp_path / "scf"), out, tmp_path / "cache", "--model", "x", "--probe", "logreg",
                 "--silence-dir", str(tmp_path / "sil"))
    assert speech_commands.main(argv, **kw) == 0
    (r,) = json.loads((out / "results.json").read_text())["results"]
    assert r["n_folds"] == 1 and r["protocol"].startswith("official split") and r["per_fold"][0]["n_val"] > 0


def test_cli_without_data_explains_how_to_get_it(tmp_path: Path, capsys) -> None:
    from ajepa.evals import esc50

    assert esc50.main(["--data", str(tmp_path / "nowhere"), "--model", "random:mini"]) == 2
    err = capsys.readouterr().err
    assert "meta/esc50.csv" in err and "--download" in err and "github.com/karoldvl/ESC-50" in err


# ----------------------------------------------------------------------------- downloader
def test_extract_archive_zip_and_tar_atomically(tmp_path: Path) -> None:
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("ESC-50-master/meta/esc50.csv", "filename,fold\n")
    out = dl.extract_archive(zpath, tmp_path / "dest", "ESC-50-master")
    assert (out / "meta" / "esc50.csv").is_file()
    tpath = tmp_path / "b.tar.gz"
    with tarfile.open(tpath, "w:gz") as t:
        for name in ("./yes/a_nohash_0.wav", "./testing_list.txt"):
            data = b"x"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    out = dl.extract_archive(tpath, tmp_path / "dest", "sc")
    assert (out / "yes" / "a_nohash_0.wav").is_file() and (out / "testing_list.txt").is_file()
    assert not [p for p in (tmp_path / "dest").iterdir() if p.name.startswith(".")]  # no temp folder left
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../escape.txt", "x")
    with pytest.raises(dl.DownloadError, match="outside"):
        dl.extract_archive(evil, tmp_path / "dest", "evil")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "dest" / "evil").exists()


def test_verify_file_size_and_sha(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"hello")
    dl.verify_file(f, 5, hashlib.sha256(b"hello").hexdigest())
    with pytest.raises(dl.DownloadError, match="bytes"):
        dl.verify_file(f, 6)
    with pytest.raises(dl.DownloadError, match="SHA-256"):
        dl.verify_file(f, 5, "0" * 64)


def test_download_network_failure_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    def no_network(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(dl.urllib.request, "urlopen", no_network)
    with pytest.raises(dl.DownloadError, match="no network") as e:
        dl.ensure_dataset("esc50", tmp_path, progress=False)
    assert "ESC-50" in str(e.value) and not list(tmp_path.glob("*.zip"))


def test_download_resumes_a_partial_file(tmp_path: Path, monkeypatch) -> None:
    payload = b"0123456789" * 100
    dest = tmp_path / "x.bin"
    dest.with_name("x.bin.part").write_bytes(payload[:300])
    seen = {}

    class Resp(io.BytesIO):
        status = 206

        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.headers = {"Content-Length": str(len(data))}

    def fake_urlopen(req, timeout=None):
        seen["range"] = req.get_header("Range")
        return Resp(payload[300:])

    monkeypatch.setattr(dl.urllib.request, "urlopen", fake_urlopen)
    dl.download_file("http://example.invalid/x.bin", dest, size=len(payload),
                     sha256=hashlib.sha256(payload).hexdigest(), progress=False)
    assert seen["range"] == "bytes=300-" and dest.read_bytes() == payload
    assert not dest.with_name("x.bin.part").exists()


def test_an_unreadable_clip_is_named_and_left_out_of_an_evaluation(tmp_path):
    from ajepa.evals.esc50 import load_task

    root = make_esc50(tmp_path / "esc")
    bad = sorted((root / "audio").iterdir())[0]
    bad.write_bytes(b"RIFF but not audio")
    task = load_task(root)
    assert str(bad) not in task.clips.paths and len(task.clips) == 3 * 5 * 2 - 1
    assert any(bad.name in note for note in task.clips.notes)
    assert all(len(split.test) + len(split.train) <= len(task.clips) for split in task.splits)
