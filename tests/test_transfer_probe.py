"""Tests of ajepa.training.transfer_probe (the trainer's transfer probe) and evals.manifest (its manifests)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ajepa.errors import ConfigError
from ajepa.features.logmel import FrontendConfig, LogMelFrontend
from ajepa.models import ViTEncoder
from ajepa.models.sizes import EncoderConfig
from ajepa.train import compose_config
from ajepa.training.loop import train
from ajepa.training.config import ProbeConfig
from ajepa.training.transfer_probe import TransferProbe, read_probe_manifest
from ajepa.evals.datasets import ClipSet
from ajepa.evals.manifest import write_manifest

SR = 16000


def _corpus(tmp_path: Path, n: int = 12) -> Path:
    """Two separable classes (tones and noise bursts), one group per file; returns the manifest."""
    rng = np.random.default_rng(0)
    t = np.arange(SR // 2) / SR
    rows = []
    for i in range(n):
        tone = (0.3 + 0.2 * rng.random()) * np.sin(2 * np.pi * rng.uniform(300, 500) * t)
        noise = rng.uniform(0.05, 0.3) * rng.standard_normal(t.size)
        for label, wav in (("tone", tone), ("noise", noise)):
            name = f"{label}_{i}.wav"
            sf.write(tmp_path / name, wav.astype(np.float32), SR)
            rows.append({"path": name, "label": label, "group": f"{label}{i}"})
    manifest = tmp_path / "probe.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "group"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _encoder() -> ViTEncoder:
    torch.manual_seed(0)
    return ViTEncoder(EncoderConfig(embed_dim=32, depth=1, num_heads=2, patch=(16, 16)))


def test_probe_separates_separable_classes_and_leaves_the_encoder_alone(tmp_path):
    probe_set = read_probe_manifest(_corpus(tmp_path))
    assert len(probe_set.paths) == 24 and sorted(set(probe_set.labels.tolist())) == [0, 1]
    assert all(Path(p).is_absolute() for p in probe_set.paths)
    probe = TransferProbe(ProbeConfig(manifest="x", max_clips=20, folds=3), probe_set, SR, seed=0)
    assert len(probe.waveforms) == 20
    encoder = _encoder().train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    rng = torch.random.get_rng_state()
    acc = probe.measure(encoder, LogMelFrontend(FrontendConfig()), clip_seconds=1.0)
    assert acc >= 0.9
    assert encoder.training and torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert probe.measure(encoder, LogMelFrontend(FrontendConfig()), clip_seconds=1.0) == acc  # deterministic


def test_bad_manifests_and_settings_are_config_errors(tmp_path):
    manifest = _corpus(tmp_path)
    with pytest.raises(ConfigError, match="no such file"):
        read_probe_manifest(tmp_path / "absent.csv")
    (tmp_path / "nolabel.csv").write_text("path,class\ntone_0.wav,tone\n")
    with pytest.raises(ConfigError, match="'label'"):
        read_probe_manifest(tmp_path / "nolabel.csv")
    (tmp_path / "missing.csv").write_text("path,label\ntone_0.wav,tone\ngone.wav,noise\n")
    with pytest.raises(ConfigError, match="1 of 2 listed files are missing"):
        read_probe_manifest(tmp_path / "missing.csv")
    (tmp_path / "one.csv").write_text("path,label\ntone_0.wav,tone\ntone_1.wav,tone\n")
    with pytest.raises(ConfigError, match="two labels"):
        read_probe_manifest(tmp_path / "one.csv")
    with pytest.raises(ConfigError, match="folds"):
        TransferProbe(ProbeConfig(manifest="x", max_clips=4, folds=5), read_probe_manifest(manifest), SR)
    with pytest.raises(ConfigError, match="pooling"):
        ProbeConfig(pooling="median")
    from ajepa.training.loop import build_probe
    with pytest.raises(ConfigError, match="average_layers"):  # before training, not at the first probe
        build_probe(compose_config(["model.encoder.depth=1", f"trainer.probe.manifest={manifest}",
                                    "trainer.probe.average_layers=5"]))


def test_the_trainer_logs_the_probe_without_changing_the_run(tmp_path):
    manifest = _corpus(tmp_path)
    base = ["model.encoder.depth=1", "model.predictor.depth=1", "data.batch_size=4", "data.num_workers=0",
            "data.synthetic_size=32", "trainer.log_every=1", "trainer.progress=false", "trainer.tensorboard=false",
            "trainer.max_steps=4"]
    plain = train(compose_config([*base, "trainer.plots=false"]), tmp_path / "plain")
    probed = train(compose_config([*base, f"trainer.probe.manifest={manifest}", "trainer.probe.every=2",
                                   "trainer.probe.max_clips=12"]), tmp_path / "probed")
    assert [r["loss"] for r in probed.records] == [r["loss"] for r in plain.records]
    accs = {r["step"]: r["probe_accuracy"] for r in probed.records if "probe_accuracy" in r}
    assert sorted(accs) == [2, 4] and all(0.0 <= a <= 1.0 for a in accs.values())
    logged = [json.loads(line) for line in (tmp_path / "probed" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("probe_accuracy") for r in logged] == [r.get("probe_accuracy") for r in probed.records]
    assert probed.plots["probe"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_manifest_cli_writes_what_the_probe_reads(tmp_path):
    paths = [str(tmp_path / f"{i}.wav") for i in range(4)]
    for p in paths:
        sf.write(p, np.zeros(800, dtype=np.float32), SR)
    clips = ClipSet("t", paths, np.array([0, 1, 0, 1]), ["cat", "dog"], np.array(["a", "a", "b", "b"]))
    out = write_manifest(clips, tmp_path / "sub" / "m.csv")
    probe_set = read_probe_manifest(out)
    assert probe_set.paths == paths and probe_set.labels.tolist() == [0, 1, 0, 1]
    assert probe_set.groups.tolist() == ["a", "a", "b", "b"]
    from ajepa.evals.manifest import main
    assert main(["--task", "fsdd", "--data-root", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.csv")]) == 2
