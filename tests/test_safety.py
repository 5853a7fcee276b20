"""Nothing lost, nothing silently wrong: run directories, model files, configs and inputs used as a careless user
or an attacker would (issue 34). Every case ends in a correct result or one of the package's own errors."""

from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import ajepa
from ajepa.checkpoint import load_checkpoint, save_checkpoint
from ajepa.errors import AjepaError, AudioInputError, CheckpointError, ConfigError
from ajepa.inference import Embedder
from ajepa.models import ENCODER_SIZES
from ajepa.train import compose_config, precheck
from ajepa.training.loop import train
from ajepa.training.run_files import RunPaths, _read_jsonl
from ajepa.training.run_guard import LOCK_NAME, RunDirectoryError, RunLock

TINY = ["model.encoder.depth=1", "model.encoder.embed_dim=32", "model.encoder.num_heads=2", "model.predictor.depth=1",
        "model.predictor.embed_dim=16", "model.predictor.num_heads=2", "data.batch_size=4", "data.num_workers=0",
        "data.synthetic_size=32", "trainer.log_every=1", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.plots=false", "trainer.cpu_threads=1"]


def tiny(*overrides: str):
    return compose_config([*TINY, *overrides])


# ------------------------------------------------------------------------------------------ run directories


def test_a_fresh_run_refuses_a_directory_that_holds_a_run(tmp_path):
    train(tiny("trainer.max_steps=3"), tmp_path)
    metrics = (tmp_path / "metrics.jsonl").read_text()
    checkpoint = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        train(tiny("trainer.max_steps=2"), tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == metrics  # nothing of the earlier run was touched
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == checkpoint
    assert precheck([f"hydra.run.dir={tmp_path}", "trainer.max_steps=2"]) is not None  # before Hydra writes
    assert precheck([f"hydra.run.dir={tmp_path}", "resume=true"]) is None
    # resume continues it; overwrite starts over on purpose.
    assert train(tiny("trainer.max_steps=4", "resume=true"), tmp_path).start_step == 3
    again = train(tiny("trainer.max_steps=2", "overwrite=true"), tmp_path)
    assert again.start_step == 0 and [r["step"] for r in again.records] == [1, 2]
    assert not (tmp_path / LOCK_NAME).exists()  # released at the end


def test_a_second_process_on_a_run_directory_is_stopped(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunDirectoryError, match=f"in use by process {os.getpid()}"):
            train(tiny("trainer.max_steps=1"), tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_a_stale_lock_is_taken_over(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead, "host": os.uname().nodename, "since": "then"}))
    assert train(tiny("trainer.max_steps=1"), tmp_path).steps == 1


def test_a_torn_metrics_line_and_stale_temporaries_do_not_block_resume(tmp_path):
    train(tiny("trainer.max_steps=2", "trainer.checkpoint_every=2"), tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 0.')  # a kill in the middle of a write
    stale = tmp_path / "checkpoints" / ".last.pt.0123456789ab.tmp"
    stale.write_bytes(b"x" * 1000)
    result = train(tiny("trainer.max_steps=3", "resume=true"), tmp_path)
    assert [r["step"] for r in result.records] == [1, 2, 3]
    assert not stale.exists()
    assert [r["step"] for r in _read_jsonl(RunPaths(tmp_path).metrics, 10)] == [1, 2, 3]


# ------------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("override, key", [
    ("optim.lr=-1", "optim.lr"), ("optim.lr=nan", "optim.lr"), ("optim.lr=abc", "optim.lr"),
    ("frontend.n_mels=0", "frontend.n_mels"), ("data.clip_seconds=10000", "data.clip_seconds"),
    ("masking.num_targets=1000", "num_targets"), ("model.encoder.depth=1000000", "depth"),
    ("model.encoder.embed_dim=1000000000", "embed_dim"), ("trainer.max_steps=abc", "trainer.max_steps"),
    ("optim.betas=[0.9,1.5]", "optim.betas"), ("data.batch_size=2.5", "data.batch_size"),
    ("overwrite=maybe", "overwrite"),
])
def test_bad_values_are_config_errors_naming_the_key(override, key, tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cfg = tiny(override)
        train(cfg, tmp_path)  # the masking check runs when the grid is known
    assert time.perf_counter() - t0 < 30  # refused, not attempted


# ------------------------------------------------------------------------------------------ model files


def test_a_checkpoint_with_flipped_bits_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", {"w": torch.randn(300, 300)})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC"):
        load_checkpoint(path)


def test_a_full_disk_is_named_and_the_previous_checkpoint_survives(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"w": torch.zeros(3)})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="no space left"):
        save_checkpoint(path, {"w": torch.ones(3)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


@pytest.fixture()
def export(tmp_path) -> Path:
    enc = replace(ENCODER_SIZES["mini"], embed_dim=32, depth=1, num_heads=2)
    Embedder.from_config(enc, clip_seconds=1.0, device="cpu").save(tmp_path / "model")
    return tmp_path / "model"


def _edit_config(export: Path, **changes) -> None:
    cfg = json.loads((export / "config.json").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        cfg[section][key] = value
    (export / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes", [
    {"encoder__depth": 1_000_000}, {"encoder__embed_dim": 1_000_000_000}, {"encoder__embed_dim": 4096},
    {"frontend__n_mels": 0}, {"frontend__norm_std": float("nan")}, {"frontend__sample_rate": 10**9},
])
def test_an_untrusted_config_is_refused_before_anything_is_built(export, changes):
    _edit_config(export, **changes)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError):
        ajepa.load(export, device="cpu")
    assert time.perf_counter() - t0 < 5  # milliseconds of checks, not gigabytes of weights


def test_nan_weights_are_refused(export):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(export / "model.safetensors"))
    weights["patch_embed.weight"][0, 0] = float("nan")
    save_file(weights, str(export / "model.safetensors"), metadata={"format": "ajepa-encoder"})
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        ajepa.load(export, device="cpu")


# ------------------------------------------------------------------------------------------ inputs


def test_a_channels_last_array_is_refused_with_the_way_out(export):
    model = ajepa.load(export, device="cpu")
    with pytest.raises(AudioInputError, match="channels_first=True"):
        model.embed(np.zeros((16000, 2), np.float32), sr=16000)
    one = model.embed(np.zeros((16000, 2), np.float32).T, sr=16000, channels_first=True)
    assert one.shape == (model.pooled_dim(model.pooling),)


def test_audio_that_would_overflow_the_front_end_is_an_error_not_nan(export):
    from ajepa import hear

    model = ajepa.load(export, device="cpu")
    loud = np.full(16000, 1e19, np.float32)
    with pytest.raises(AudioInputError, match="overflow"):
        model.embed(loud, sr=16000)
    with pytest.raises(AudioInputError, match="overflow"):
        hear.get_scene_embeddings(torch.from_numpy(loud)[None], hear.load_model(str(export)))
    assert np.isfinite(model.embed(np.full(16000, 1e6, np.float32), sr=16000)).all()


def test_every_package_error_is_a_value_error_and_an_ajepa_error():
    for cls in (AudioInputError, CheckpointError, ConfigError, RunDirectoryError):
        assert issubclass(cls, AjepaError) and issubclass(cls, ValueError)


# ------------------------------------------------------------------------------------------ batches and outputs


def _wav(path: Path, seconds: float, sr: int = 16000, seed: int = 0) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr, subtype="PCM_16")
    return path


def test_a_folder_embeds_like_the_command_line_and_bad_files_can_be_skipped(export, tmp_path):
    model = ajepa.load(export, device="cpu")
    folder = tmp_path / "clips"
    folder.mkdir()
    good = [_wav(folder / f"{i}.wav", 0.5, seed=i) for i in range(2)]
    (folder / "z_bad.wav").write_bytes(b"RIFF not audio")
    with pytest.raises(AudioInputError, match="z_bad.wav"):
        model.embed(folder)
    out, failed = model.embed(folder, on_error="skip")
    assert out.shape == (2, model.pooled_dim(model.pooling)) and [i for i, _ in failed] == [2]
    np.testing.assert_allclose(out, model.embed([str(p) for p in good]), atol=1e-6)
    none, failed = model.embed(str(folder / "z_bad.wav"), on_error="skip")
    assert none is None and len(failed) == 1
    empty, failed = model.embed([str(folder / "z_bad.wav")], on_error="skip")
    assert empty.shape == (0, model.pooled_dim(model.pooling))
    with pytest.raises(ValueError, match="on_error"):
        model.embed(folder, on_error="ignore")


def test_a_long_file_is_streamed_and_matches_a_full_decode(export, tmp_path):
    from ajepa.features.audio import load_audio
    from ajepa.inference.inputs import STREAM_SECONDS, StreamedAudio, read_source

    path = _wav(tmp_path / "long.wav", STREAM_SECONDS + 10, sr=22050)
    streamed = read_source(str(path), None, 16000)
    assert isinstance(streamed, StreamedAudio)
    full = load_audio(path, target_sr=16000)
    assert streamed.numel() == full.numel()
    for start in (0, 16000 * 7 + 123, full.numel() - 16000):
        torch.testing.assert_close(streamed[start:start + 16000], full[start:start + 16000], atol=1e-5, rtol=0)
    model = ajepa.load(export, device="cpu")
    np.testing.assert_allclose(model.embed(str(path)), model.embed(full.numpy(), sr=16000), atol=1e-4)


def test_the_embed_command_never_replaces_an_output_with_nothing(export, tmp_path, capsys):
    from ajepa.cli.embed import main as embed_cli

    keep = tmp_path / "keep.npz"
    keep.write_bytes(b"earlier work")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"RIFF not audio")
    assert embed_cli([str(tmp_path / "bad"), "--model", str(export), "--out", str(keep), "--no-progress"]) == 1
    assert keep.read_bytes() == b"earlier work"
    assert "not written" in capsys.readouterr().err
    # An output that cannot be written is refused before any work.
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    _wav(tmp_path / "ok.wav", 0.5)
    assert embed_cli([str(tmp_path / "ok.wav"), "--model", str(export), "--out", str(blocker / "x.npz"),
                      "--no-progress"]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_a_binary_manifest_is_an_audio_input_error(tmp_path):
    from ajepa.features.audio import list_audio_files

    manifest = tmp_path / "list.csv"
    manifest.write_bytes(bytes(range(128, 256)))
    with pytest.raises(AudioInputError, match="not a text manifest"):
        list_audio_files(manifest)


# ------------------------------------------------------------------------------------------ fuzzing


FUZZ_VALUES = [0, -1, 1, 2, 3.5, 1e9, -1e9, float("nan"), float("inf"), True, None, "x", "", [1, 2], [16, 16, 16],
               {"a": 1}, 10**12, 2**63]


def test_fuzzed_model_configs_load_or_fail_with_a_package_error(export):
    rng = np.random.default_rng(0)
    original = json.loads((export / "config.json").read_text())
    fields = [(s, k) for s in ("encoder", "frontend") for k in original[s]] + [(None, "clip_seconds"),
                                                                              (None, "sample_rate")]
    for _ in range(60):
        cfg = json.loads(json.dumps(original))
        for _ in range(int(rng.integers(1, 3))):
            section, key = fields[int(rng.integers(len(fields)))]
            value = FUZZ_VALUES[int(rng.integers(len(FUZZ_VALUES)))]
            (cfg if section is None else cfg[section])[key] = value
        (export / "config.json").write_text(json.dumps(cfg))
        t0 = time.perf_counter()
        try:
            model = ajepa.load(export, device="cpu")
        except AjepaError:
            pass
        else:  # whatever loads must embed to finite numbers
            assert np.isfinite(model.embed(np.zeros(8000, np.float32), sr=16000)).all()
        assert time.perf_counter() - t0 < 10, cfg


@pytest.mark.parametrize("seed", range(3))
def test_fuzzed_arrays_embed_or_fail_with_a_package_error(export, seed):
    model = ajepa.load(export, device="cpu")
    rng = np.random.default_rng(seed)
    shapes = [(0,), (1,), (5,), (400,), (16000,), (2, 0), (0, 16000), (3, 8000), (8000, 3), (9, 9), (1, 1, 100),
              (2, 2, 2)]
    for shape in shapes:
        for dtype in (np.float32, np.float64, np.int16, np.int64, np.uint8, np.complex64, bool):
            arr = (rng.standard_normal(shape) * 0.1).astype(dtype) if shape else np.zeros(0, dtype)
            for sr in (16000, 8000, 0, None):
                try:
                    out = model.embed(arr, sr=sr)
                except AjepaError:
                    continue
                assert np.isfinite(np.asarray(out, dtype=np.float64)).all(), (shape, dtype, sr)


def test_a_run_directory_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the run folder should be")
    with pytest.raises(RunDirectoryError, match="cannot create the run directory"):
        train(tiny("trainer.max_steps=1"), blocker / "run")
    assert precheck([f"hydra.run.dir={tmp_path}", "resume=false"]) is None  # an empty folder is fine
