"""Fine-tuning: learning on a synthetic task, augmentations, layer-wise decay, export -> load -> predict, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ajepa.errors import CheckpointError
from ajepa.inference import Embedder
from ajepa.models.sizes import EncoderConfig
from ajepa.evals.augment import drop_tokens, mixup, random_gain, spec_augment, time_shift
from ajepa.evals.classifier import classifier_from_embedder, load_classifier, predict_files, save_classifier
from ajepa.evals.datasets import ClipSet
from ajepa.evals.finetune import FinetuneConfig, finetune_fold, layer_decay_groups, main, run_finetune
from ajepa.evals.probes import splits_from_folds
from ajepa.evals.report import Task

SR = 16000
ENC = EncoderConfig(embed_dim=64, depth=2, num_heads=4)
CLASSES = ("low", "mid", "high")


def _clip(cls: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    freq = (200.0, 1200.0, 4000.0)[cls] * rng.uniform(0.9, 1.1)
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Task:
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    paths, labels, folds = [], [], []
    for i in range(48):
        cls = i % 3
        path = root / f"{i:02d}_{CLASSES[cls]}.wav"
        sf.write(path, _clip(cls, rng.uniform(0.5, 1.2), rng), SR)
        paths.append(str(path)), labels.append(cls), folds.append(1 + (i // 3) % 2)
    clips = ClipSet("tones", paths, np.array(labels), list(CLASSES), np.array([f"g{i}" for i in range(48)]),
                    folds=np.array(folds))
    return Task("tones", clips, splits_from_folds(clips.folds), "2-fold", check_groups=False)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.from_config(ENC, clip_seconds=0.5, seed=0, device="cpu")


FAST = dict(epochs=12, batch_size=8, lr=3e-3, seed=1)  # every augmentation on, at its default strength


def test_tiny_finetune_learns_well_above_chance_and_is_deterministic(task, embedder, tmp_path):
    cfg = FinetuneConfig(**FAST)
    first = run_finetune(task, embedder, cfg, export=tmp_path / "model")
    assert first["accuracy"] >= 0.6, first["accuracy"]  # chance is 1/3; a random encoder, 24 clips per fold
    assert len(first["folds"]) == 2 and all(len(f["curve"]) == cfg.epochs for f in first["folds"])
    assert first["folds"][0]["curve"][-1]["train_loss"] < first["folds"][0]["curve"][0]["train_loss"]
    again = run_finetune(task, embedder, cfg)
    assert [f["accuracy"] for f in again["folds"]] == [f["accuracy"] for f in first["folds"]]
    assert again["folds"][0]["curve"] == first["folds"][0]["curve"]
    assert np.asarray(first["confusion"]).sum() == len(task.clips)
    # The exported first-fold model labels files like the fine-tuned one did.
    model, labels = load_classifier(tmp_path / "model")
    assert labels == list(CLASSES)
    results = predict_files(model, labels, task.clips.paths[:6], top_k=2)
    assert [len(r["top"]) for r in results] == [2] * 6
    assert sum(r["top"][0][0] == CLASSES[i % 3] for i, r in enumerate(results)) >= 4
    long = [r for r in results if len(r["windows"]) > 1]
    assert long and all(w["end_s"] > w["start_s"] for r in long for w in r["windows"])


def test_export_load_predict_round_trip_gives_the_same_probabilities(embedder, tmp_path):
    model = classifier_from_embedder(embedder, 3).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    path = tmp_path / "a.wav"
    sf.write(path, _clip(1, 1.3, np.random.default_rng(3)), SR)
    save_classifier(model, list(CLASSES), tmp_path / "m")
    loaded, labels = load_classifier(tmp_path / "m")
    a = predict_files(model, list(CLASSES), [path], top_k=3)[0]
    b = predict_files(loaded, labels, [path], top_k=3)[0]
    assert [x[0] for x in a["top"]] == [x[0] for x in b["top"]]
    np.testing.assert_allclose([x[1] for x in a["top"]], [x[1] for x in b["top"]], atol=1e-6)
    assert sum(p for _, p in b["top"]) == pytest.approx(1.0, abs=1e-5)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["format"] == "ajepa-classifier" and cfg["labels"] == list(CLASSES)


def test_predict_cli_labels_files_and_explains_bad_models(embedder, tmp_path, capsys):
    from ajepa.evals.predict import main as predict_cli

    save_classifier(classifier_from_embedder(embedder, 3), list(CLASSES), tmp_path / "m")
    sf.write(tmp_path / "x.wav", _clip(0, 0.7, np.random.default_rng(1)), SR)
    assert predict_cli([str(tmp_path / "m"), str(tmp_path / "x.wav"), "--top-k", "2", "--json",
                        str(tmp_path / "p.json")]) == 0
    written = json.loads((tmp_path / "p.json").read_text())
    assert "x.wav" in capsys.readouterr().out and written["predictions"][0]["top"] and written["failed"] == []
    assert predict_cli([str(tmp_path), str(tmp_path / "x.wav")]) == 1  # a folder that is not a classifier
    assert "not a saved classifier" in capsys.readouterr().err
    assert predict_cli([str(tmp_path / "m"), str(tmp_path / "missing.wav")]) == 1
    # A bad file among good ones is named and skipped; the others are labelled and written.
    (tmp_path / "bad.wav").write_bytes(b"RIFF not audio")
    assert predict_cli([str(tmp_path / "m"), str(tmp_path / "x.wav"), str(tmp_path / "bad.wav"), "--json",
                        str(tmp_path / "q.json")]) == 1
    written = json.loads((tmp_path / "q.json").read_text())
    assert [r["path"] for r in written["predictions"]] == [str(tmp_path / "x.wav")]
    assert [f["path"] for f in written["failed"]] == [str(tmp_path / "bad.wav")]
    assert "bad.wav" in capsys.readouterr().err


def test_layer_decay_assigns_the_rates_it_says(embedder):
    model = classifier_from_embedder(embedder, 3)
    groups = layer_decay_groups(model, lr=1e-3, weight_decay=0.05, decay=0.5)
    depth = ENC.depth
    by_name = {}
    for g in groups:
        for p in g["params"]:
            by_name[id(p)] = g
    named = dict(model.named_parameters())
    assert by_name[id(named["head.weight"])]["lr"] == pytest.approx(1e-3)
    assert by_name[id(named["encoder.blocks.1.mlp.fc1.weight"])]["lr"] == pytest.approx(1e-3 * 0.5)
    assert by_name[id(named["encoder.blocks.0.attn.qkv.weight"])]["lr"] == pytest.approx(1e-3 * 0.5 ** depth)
    assert by_name[id(named["encoder.patch_embed.weight"])]["lr"] == pytest.approx(1e-3 * 0.5 ** (depth + 1))
    assert by_name[id(named["encoder.blocks.0.attn.qkv.bias"])]["weight_decay"] == 0.0
    assert by_name[id(named["head.weight"])]["weight_decay"] == 0.05
    assert sum(len(g["params"]) for g in groups) == sum(1 for n, p in named.items() if not n.startswith("frontend."))


def test_augmentations_keep_shapes_and_padding():
    gen = torch.Generator().manual_seed(0)
    wav = torch.zeros(3, 800)
    lengths = torch.tensor([800, 500, 120])
    for b, n in enumerate(lengths.tolist()):
        wav[b, :n] = torch.linspace(0.1, 0.9, n)
    shifted = time_shift(wav, lengths, gen)
    assert shifted.shape == wav.shape and torch.equal(shifted[1, 500:], wav[1, 500:])
    assert torch.allclose(shifted[1, :500].sort().values, wav[1, :500].sort().values)
    gained = random_gain(wav, lengths, 12.0, gen)
    assert gained.abs().max() <= 1.0 + 1e-6 and torch.equal(gained[2, 120:], wav[2, 120:])
    spec = torch.randn(3, 128, 40)
    frames = torch.zeros(3, 40, dtype=torch.bool)
    frames[0], frames[1, :25], frames[2, :4] = True, True, True
    aug = spec_augment(spec, frames, gen, freq_width=30, time_width=10)
    assert aug.shape == spec.shape and torch.equal(aug[1, :, 25:], spec[1, :, 25:])
    assert not torch.equal(aug, spec)
    target = torch.eye(3)
    mixed, soft, perm = mixup(spec, target, 0.5, gen)
    assert mixed.shape == spec.shape and torch.allclose(soft.sum(1), torch.ones(3))
    assert (soft.max(1).values >= 0.5 - 1e-6).all() and sorted(perm.tolist()) == [0, 1, 2]
    valid = torch.zeros(3, 10, dtype=torch.bool)
    valid[0], valid[1, :6], valid[2, :3] = True, True, True
    keep = drop_tokens(valid, 0.5, gen)
    assert keep.shape == (3, 2) and valid.gather(1, keep).all()  # M = ceil(3 * 0.5): the smallest row's count


def test_a_longer_window_than_pretraining_trains_and_is_exported(task, embedder, tmp_path):
    # 1.2 s windows on an encoder pretrained with 0.5 s crops: fewer, longer windows per clip, kept in the export
    cfg = FinetuneConfig(**{**FAST, "epochs": 2, "clip_seconds": 1.2})
    result = run_finetune(task, embedder, cfg, export=tmp_path / "long")
    assert result["config"]["clip_seconds"] == 1.2 and 0.0 <= result["accuracy"] <= 1.0
    model, _ = load_classifier(tmp_path / "long")
    assert model.clip_seconds == pytest.approx(1.2)
    windows = predict_files(model, list(CLASSES), task.clips.paths[:8], top_k=1)
    assert all(len(r["windows"]) == 1 for r in windows)  # every clip here is at most 1.2 s
    assert classifier_from_embedder(embedder, 3).clip_seconds == pytest.approx(0.5)
    with pytest.raises(ValueError, match="clip_seconds"):
        FinetuneConfig(clip_seconds=-1.0)


def test_empty_folds_and_bad_settings_give_clear_errors(embedder):
    model = classifier_from_embedder(embedder, 3)
    from ajepa.evals.finetune import _Clips

    some = _Clips([torch.zeros(8000)], np.array([0]))
    none = _Clips([], np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="empty fold"):
        finetune_fold(model, none, some, FinetuneConfig(epochs=1))
    with pytest.raises(ValueError, match="layer_decay"):
        FinetuneConfig(layer_decay=0.0)
    with pytest.raises(ValueError, match="labels"):
        save_classifier(model, ["a", "b"], "unused")
    with pytest.raises(CheckpointError):
        load_classifier(Path("/nonexistent/model"))


def test_cli_runs_a_task_from_the_suite_registry(tmp_path, monkeypatch, task, embedder):
    import ajepa.evals.suite as suite

    monkeypatch.setattr(suite, "load_tasks", lambda names, root, **kw: {"fsdd": (Path(root or "."), task)})

    class Adapter:
        def __init__(self, e):
            self.embedder = e

    monkeypatch.setattr(suite, "resolve_member", lambda spec, **kw: ("random", Adapter(embedder)))
    out = tmp_path / "report"
    assert main(["--task", "fsdd", "--model", "random:x", "--out", str(out), "--epochs", "1", "--batch-size", "8",
                 "--no-progress", "--no-time-shift"]) == 0
    payload = json.loads((out / "results.json").read_text())
    assert payload["config"]["time_shift"] is False and len(payload["folds"]) == 2
    assert (out / "confusion.png").is_file() and (out / "learning_curves.png").is_file()
    assert "Accuracy" in (out / "results.md").read_text()


def test_every_recipe_flag_is_documented_and_parses_into_the_config():
    from dataclasses import fields

    from ajepa.evals.finetune import build_parser

    parser = build_parser()
    text = " ".join(parser.format_help().split())
    for f in fields(FinetuneConfig):
        assert f.metadata["help"].split()[0] in text and "--" + f.name.replace("_", "-") in text
    args = parser.parse_args(["--task", "esc50", "--model", "m", "--out", "o", "--epochs", "3", "--no-time-shift",
                              "--layer-decay", "0.5"])
    assert (args.epochs, args.time_shift, args.layer_decay, args.batch_size) == (3, False, 0.5, 32)
