"""Embedding extraction: loading (checkpoint and export), input kinds, pooling, windowing, padding, CLI."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ajepa
from ajepa.checkpoint import load_checkpoint, save_checkpoint
from ajepa.cli.embed import main as embed_cli
from ajepa.errors import AudioInputError, CheckpointError, ConfigError
from ajepa.cli.export import main as export_cli
from ajepa.features.logmel import FrontendConfig
from ajepa.features.patches import patchify, valid_tokens
from ajepa.inference import Embedder
from ajepa.inference import load as load_auto


def load(*args, **kwargs) -> Embedder:
    """``ajepa.load`` in plain fp32 (exact comparisons); ``load_auto`` keeps the library default."""
    kwargs.setdefault("bf16", False)
    return load_auto(*args, **kwargs)
from ajepa.models import ENCODER_SIZES, PredictorConfig, last_layers, mean_of_layers
from ajepa.training.model import AudioJEPA
from ajepa.objectives import ObjectiveConfig

SR = 16000
CLIP_SECONDS = 1.0  # 98 frames -> 7 patch columns per window
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _tone(seconds: float, freq: float = 440.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    return (0.5 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny training checkpoint whose target and context encoders differ."""
    enc = ENCODER_SIZES["mini"]
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AudioJEPA(enc, PredictorConfig(embed_dim=64, depth=1, num_heads=4), ObjectiveConfig())
    with torch.no_grad():
        for p in model.target_encoder.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    config = {"seed": 0, "frontend": asdict(FrontendConfig(norm_mean=-5.0)), "model": {"encoder": asdict(enc)},
              "data": {"clip_seconds": CLIP_SECONDS}}
    state = {"step": 3, "model": model.state_dict(), "optimizer": {}, "rng": {}, "data": {"epoch": 0,
             "batch_in_epoch": 3}, "config": config}
    return save_checkpoint(tmp_path_factory.mktemp("run") / "last.pt", state)


def test_checkpoints_that_hold_the_model_settings_at_the_top_level_still_load(ckpt, tmp_path) -> None:
    """Checkpoints written before the run config was the one source of frontend, encoder and clip length."""
    state = load_checkpoint(ckpt)
    config = state.pop("config")
    legacy = {**state, "config": {"seed": 0}, "frontend": config["frontend"], "encoder": config["model"]["encoder"],
              "clip_seconds": config["data"]["clip_seconds"]}
    old = load(save_checkpoint(tmp_path / "old.pt", legacy), device="cpu")
    new = load(ckpt, device="cpu")
    assert old.frontend_config == new.frontend_config and old.clip_seconds == new.clip_seconds
    wav = _tone(0.5)
    np.testing.assert_array_equal(old.embed(wav, SR), new.embed(wav, SR))


@pytest.fixture(scope="module")
def model(ckpt) -> Embedder:
    return load(ckpt, device="cpu")


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model"
    assert export_cli([str(ckpt), "--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------- loading and export
def test_checkpoint_encoders_and_export_parity(ckpt, model, exported, tmp_path):
    raw = torch.load(ckpt, weights_only=True)["model"]
    for name, emb in (("target", model), ("context", load(ckpt, encoder="context", device="cpu"))):
        for key, value in emb.encoder.state_dict().items():
            assert torch.equal(value, raw[f"{name}_encoder.{key}"])
    assert model.frontend_config.norm_mean == -5.0 and model.clip_seconds == CLIP_SECONDS

    cfg = json.loads((exported / "config.json").read_text())
    assert cfg["format"] == "ajepa-encoder" and cfg["source_encoder"] == "target"
    assert cfg["frontend"]["norm_mean"] == -5.0 and cfg["sample_rate"] == SR
    # The export records the recommended read-out, and loading it uses that read-out unless told otherwise.
    assert cfg["readout"] == {"pooling": "freqcat+std", "average_layers": "all"}
    wav = _tone(1.7)
    recommended = load(ckpt, device="cpu", pooling="freqcat+std", average_layers="all")
    expected = recommended.embed(wav, SR)
    assert expected.shape == (recommended.pooled_dim("freqcat+std"),)
    for path in (exported, exported / "model.safetensors", exported / "config.json"):
        got = load(path, device="cpu")
        assert got.pooling == "freqcat+std" and got.average_layers == model.encoder_config.depth + 1
        np.testing.assert_array_equal(got.embed(wav, SR), expected)
    np.testing.assert_array_equal(load(exported, device="cpu", pooling="mean", average_layers=1).embed(wav, SR),
                                  model.embed(wav, SR))  # explicit arguments win

    # NAME.safetensors + NAME.json, and the context encoder on request.
    assert export_cli([str(ckpt), "--out", str(tmp_path / "ctx.safetensors"), "--encoder", "context",
                       "--pooling", "mean", "--average-layers", "1"]) == 0
    assert (tmp_path / "ctx.json").is_file()
    ctx = load(tmp_path / "ctx.safetensors", device="cpu")
    assert ctx.source_encoder == "context" and ctx.pooling == "mean" and ctx.average_layers == 1
    np.testing.assert_array_equal(ctx.embed(wav, SR), load(ckpt, encoder="context", device="cpu").embed(wav, SR))
    assert not np.allclose(ctx.embed(wav, SR), model.embed(wav, SR))
    with pytest.raises(CheckpointError, match="holds the context encoder"):
        load(tmp_path / "ctx.safetensors", encoder="target")


def test_embedder_save_round_trip(tmp_path):
    emb = Embedder.from_config(ENCODER_SIZES["mini"], clip_seconds=CLIP_SECONDS, seed=3, device="cpu")
    again = Embedder.from_config(ENCODER_SIZES["mini"], clip_seconds=CLIP_SECONDS, seed=3, device="cpu")
    other = Embedder.from_config(ENCODER_SIZES["mini"], clip_seconds=CLIP_SECONDS, seed=4, device="cpu")
    wav = _tone(0.8)
    np.testing.assert_array_equal(emb.embed(wav, SR), again.embed(wav, SR))
    assert not np.allclose(emb.embed(wav, SR), other.embed(wav, SR))
    with pytest.raises(ConfigError, match="clip_seconds"):
        Embedder.from_config(ENCODER_SIZES["mini"], clip_seconds=0.1)
    emb.save(tmp_path / "m")
    np.testing.assert_array_equal(load(tmp_path / "m").embed(wav, SR), emb.embed(wav, SR))


class _Pickled:
    pass


def _bad_files(tmp: Path, exported: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    cases: dict[str, Path] = {}

    def export_copy(name: str) -> Path:
        d = tmp / name
        d.mkdir()
        for f in ("model.safetensors", "config.json"):
            (d / f).write_bytes((exported / f).read_bytes())
        return d

    cases["missing"] = tmp / "nope.pt"
    (p := tmp / "random.pt").write_bytes(rng.bytes(4096))
    cases["random bytes .pt"] = p
    (p := tmp / "random.bin").write_bytes(rng.bytes(100))
    cases["random bytes, no suffix"] = p
    torch.save(torch.zeros(3), p := tmp / "tensor.pt")
    cases["plain tensor .pt"] = p
    torch.save({"obj": _Pickled(), "format": "ajepa-checkpoint"}, p := tmp / "pickled.pt")
    cases["pickled object .pt"] = p
    torch.save({"format": "ajepa-checkpoint", "version": 1, "model": {}}, p := tmp / "empty.pt")
    cases["checkpoint without weights"] = p
    d = export_copy("badjson")
    (d / "config.json").write_text(json.dumps({"format": "something-else", "version": 1}))
    cases["json with wrong format"] = d
    d = export_copy("notjson")
    (d / "config.json").write_bytes(rng.bytes(64))
    cases["config is random bytes"] = d
    d = export_copy("newer")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "version": 99}))
    cases["newer version"] = d
    d = export_copy("truncated")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    cases["truncated safetensors"] = d
    d = export_copy("randomweights")
    (d / "model.safetensors").write_bytes(rng.bytes(2048))
    cases["random-bytes safetensors"] = d
    d = export_copy("wrongwidth")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "encoder": {**cfg["encoder"], "embed_dim": 64}}))
    cases["config/weights shape mismatch"] = d
    d = export_copy("deeper")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "encoder": {**cfg["encoder"], "depth": 5}}))
    cases["missing weights"] = d
    d = export_copy("unknownfield")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "frontend": {**cfg["frontend"], "bogus": 1}}))
    cases["unknown config field"] = d
    d = export_copy("shortclip")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "clip_seconds": 0.05}))
    cases["window shorter than two patch columns"] = d
    d = export_copy("noweights")
    (d / "model.safetensors").unlink()
    cases["no weights file"] = d
    return cases


def test_bad_files_raise_checkpoint_error(tmp_path, exported):
    for name, path in _bad_files(tmp_path, exported).items():
        with pytest.raises(CheckpointError) as info:
            load(path, device="cpu")
        assert str(path.name) in str(info.value) or str(path) in str(info.value), name


def test_embed_and_load_without_model_use_the_shipped_default(model, exported):
    import ajepa.cli.embed  # noqa: F401  (the CLI module must not shadow the function ajepa.embed)
    from ajepa.pretrained import DEFAULT_MODEL_DIR

    default = load_auto(device="cpu")
    assert default.pooling == "freqcat+std" and default.average_layers == default.encoder_config.depth + 1
    wav = _tone(0.5)
    got = ajepa.embed(wav, SR, device="cpu")
    assert got.shape == (default.pooled_dim("freqcat+std"),) and np.isfinite(got).all()
    np.testing.assert_array_equal(got, default.embed(wav, SR))
    np.testing.assert_array_equal(got, load_auto(DEFAULT_MODEL_DIR, device="cpu").embed(wav, SR))
    assert ajepa.embed(wav, SR, device="cpu", pooling="mean").shape == (default.embed_dim,)  # explicit wins
    np.testing.assert_array_equal(ajepa.embed(wav, SR, model=exported, device="cpu", pooling="mean+max"),
                                  load_auto(exported, device="cpu").embed(wav, SR, pooling="mean+max"))


def test_shipped_default_weights_are_int8_safetensors_under_2_mib():
    from safetensors import safe_open

    from ajepa.pretrained import DEFAULT_MODEL_DIR
    from ajepa.inference.quantization import SCALE_SUFFIX

    weights = DEFAULT_MODEL_DIR / "model.safetensors"
    assert weights.stat().st_size <= 2 * 2**20  # small enough to ship in the package and the repository
    with safe_open(str(weights), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        assert f.metadata()["weights_dtype"] == "int8"
    matrices = [k for k, t in tensors.items() if not k.endswith(SCALE_SUFFIX) and t.ndim >= 2]
    assert len(matrices) >= 17 and all(tensors[k].dtype == torch.int8 for k in matrices)  # 4 blocks x 4 + patches
    assert tensors["blocks.0.attn.qkv.bias"].dtype == torch.float16
    cfg = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert cfg["source_encoder"] == "target" and cfg["readout"]["pooling"] == "freqcat+std"
    default = load_auto(device="cpu")
    assert all(p.dtype == torch.float32 for p in default.encoder.parameters())


@pytest.mark.parametrize("weights_dtype, stored, max_size, min_cos",
                         [("float16", torch.float16, 0.6, 0.999), ("int8", torch.int8, 0.35, 0.999)])
def test_compact_exports_embed_like_the_fp32_weights(ckpt, tmp_path, weights_dtype, stored, max_size, min_cos):
    from safetensors import safe_open

    full = load(ckpt, device="cpu", pooling="freqcat+std", average_layers="all")
    full.save(tmp_path / "fp32")
    full.save(tmp_path / "small", weights_dtype=weights_dtype)
    with safe_open(str(tmp_path / "small" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("blocks.0.mlp.fc1.weight").dtype == stored
    assert (tmp_path / "small" / "model.safetensors").stat().st_size < max_size * (
        tmp_path / "fp32" / "model.safetensors").stat().st_size
    small = load(tmp_path / "small", device="cpu")
    assert all(p.dtype == torch.float32 for p in small.encoder.parameters())  # computed in float32 after loading
    wavs = [_tone(s, f, seed=i) for i, (s, f) in enumerate([(0.4, 300.0), (1.0, 700.0), (2.3, 1500.0)])]
    a = load(tmp_path / "fp32", device="cpu").embed(wavs, SR)
    b = small.embed(wavs, SR)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= min_cos
    assert not np.array_equal(a, b)  # the storage really is lossy: the check above is not vacuous
    np.testing.assert_array_equal(a, full.embed(wavs, SR))


def test_export_cli_weights_dtype_and_fp16_shorthand(ckpt, tmp_path):
    from safetensors import safe_open

    for args, dtype in ((["--weights-dtype", "int8"], torch.int8), (["--fp16"], torch.float16), ([], torch.float32)):
        out = tmp_path / "_".join(args or ["default"])
        assert export_cli([str(ckpt), "--out", str(out), *args]) == 0
        with safe_open(str(out / "model.safetensors"), "pt") as f:
            assert f.get_tensor("blocks.0.attn.qkv.weight").dtype == dtype
    with pytest.raises(SystemExit):
        export_cli([str(ckpt), "--out", str(tmp_path / "bad"), "--weights-dtype", "int4"])
    with pytest.raises(ValueError, match="int4"):
        load(ckpt, device="cpu").save(tmp_path / "bad2", weights_dtype="int4")


def test_int8_export_missing_its_scales_fails_to_load(ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    from ajepa.inference.quantization import SCALE_SUFFIX

    load(ckpt, device="cpu").save(tmp_path / "q", weights_dtype="int8")
    tensors = load_file(str(tmp_path / "q" / "model.safetensors"))
    del tensors["blocks.0.mlp.fc2.weight" + SCALE_SUFFIX]
    save_file(tensors, str(tmp_path / "q" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="inconsistent int8 weights.*fc2.weight"):
        load(tmp_path / "q", device="cpu")


def test_checkpoint_with_one_encoder_loads_it(tmp_path):
    enc = ENCODER_SIZES["mini"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        vit_state = Embedder.from_config(enc, clip_seconds=CLIP_SECONDS, seed=1, device="cpu").encoder.state_dict()
    state = {"step": 1, "model": {f"context_encoder.{k}": v for k, v in vit_state.items()}, "config": {"seed": 0},
             "frontend": asdict(FrontendConfig()), "encoder": asdict(enc), "clip_seconds": CLIP_SECONDS}
    path = save_checkpoint(tmp_path / "mae.pt", state)
    only = load(path, device="cpu")
    assert only.source_encoder == "context"
    for k, v in only.encoder.state_dict().items():
        assert torch.equal(v, vit_state[k])
    with pytest.raises(CheckpointError, match="holds only the context encoder"):
        load(path, encoder="target", device="cpu")


# ---------------------------------------------------------------- inputs, shapes, pooling
def test_input_kinds_and_shapes(model, tmp_path):
    d = model.embed_dim
    a, b = _tone(0.9, 440.0), _tone(0.9, 1500.0, seed=1)
    one = model.embed(a, SR)
    assert one.shape == (d,) and one.dtype == np.float32 and np.isfinite(one).all()
    np.testing.assert_allclose(model.embed(torch.from_numpy(a), SR), one, atol=1e-6)

    batch = model.embed(np.stack([a, b]), SR)
    assert batch.shape == (2, d) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0], one, atol=1e-5)
    assert not np.allclose(batch[0], batch[1])
    # Windows of different clips share forward passes; the result must not depend on how they are batched.
    np.testing.assert_allclose(model.embed(np.stack([a, b]), SR, batch_size=1), batch, atol=1e-5)

    stereo = model.embed(np.stack([a, b]), SR, channels_first=True)
    np.testing.assert_allclose(stereo, model.embed((a + b) / 2, SR), atol=1e-5)

    sf.write(pa := tmp_path / "a.wav", a, SR)
    sf.write(pb := tmp_path / "b_8k.flac", b[::2], SR // 2)
    np.testing.assert_allclose(model.embed(str(pa)), one, atol=1e-3)  # 16-bit PCM rounding
    files = model.embed([pa, pb])
    assert files.shape == (2, d)
    mixed = model.embed([str(pa), b], SR)
    assert mixed.shape == (2, d)
    assert model.embed(a[::2], SR // 2).shape == (d,)  # resampled

    with pytest.raises(AudioInputError, match="sr="):
        model.embed(a)
    with pytest.raises(AudioInputError):
        model.embed(np.zeros((2, 2, 100), np.float32), SR)
    with pytest.raises(AudioInputError):
        model.embed([], SR)
    with pytest.raises(AudioInputError, match="no such file"):
        model.embed(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="pooling"):
        model.embed(a, SR, pooling="median")


def test_poolings_and_frames(model):
    d = model.embed_dim
    a = _tone(0.9)
    mean = model.embed(a, SR)
    mm = model.embed(a, SR, pooling="mean+max")
    assert mm.shape == (2 * d,)
    np.testing.assert_allclose(mm[:d], mean, atol=1e-6)
    tokens = model.embed(a, SR, pooling="none")
    clip, frames, times = model.embed(a, SR, return_frames=True)
    np.testing.assert_array_equal(clip, mean)
    np.testing.assert_array_equal(tokens, frames)
    assert frames.shape == (len(times), d) and frames.dtype == np.float32
    # 0.9 s -> 88 frames -> 6 columns of 16 frames; all of them hold real audio.
    assert len(times) == math.ceil(model.frontend.num_frames(len(a)) / 16)
    assert (mm[d:] >= frames.max(0) - 1e-5).all()
    np.testing.assert_allclose(frames.mean(0), mean, atol=1e-5)

    batch_tokens = model.embed(np.stack([a, a]), SR, pooling="none")
    assert isinstance(batch_tokens, list) and len(batch_tokens) == 2 and batch_tokens[0].shape == frames.shape
    _, bframes, btimes = model.embed(np.stack([a, a]), SR, return_frames=True)
    assert len(bframes) == len(btimes) == 2


def test_bf16_autocast_stays_close(model):
    wav = _tone(0.9)
    ref = model.embed(wav, SR)
    model.bf16 = True
    try:
        low = model.embed(wav, SR)
    finally:
        model.bf16 = False
    assert low.dtype == np.float32
    cos = float(ref @ low / (np.linalg.norm(ref) * np.linalg.norm(low)))
    assert cos > 0.99


def test_long_audio_is_windowed_and_stitched(model):
    seconds = 3 * CLIP_SECONDS + 0.37
    wav = _tone(seconds, 300.0) * np.linspace(0.1, 1.0, int(seconds * SR), dtype=np.float32)
    clip, frames, times = model.embed(wav, SR, return_frames=True, batch_size=3)
    expected_cols = math.ceil(model.frontend.num_frames(len(wav)) / 16)
    assert frames.shape == (expected_cols, model.embed_dim)
    assert np.all(np.diff(times) > 0)
    np.testing.assert_allclose(np.diff(times), 0.16, atol=1e-9)
    assert times[0] > 0 and times[-1] < seconds
    np.testing.assert_allclose(clip, frames.mean(0), atol=1e-5)
    # The first columns are most central in the first window, so they equal the embedding of that window alone.
    _, head, _ = model.embed(wav[: int(CLIP_SECONDS * SR)], SR, return_frames=True)
    np.testing.assert_allclose(frames[:3], head[:3], atol=1e-5)
    assert not np.allclose(frames[-1], head[-1])


def _encode_one_window(model: Embedder, wav: np.ndarray,
                       average_last: int = 1) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """``(tokens (N, D), holds_audio (N,) bool, grid)`` of a clip no longer than one window, zero-padded to it and
    encoded directly (no ``Embedder`` windowing): the reference the pooling tests compare against."""
    assert len(wav) <= CLIP_SECONDS * SR
    with torch.inference_mode():
        padded = torch.zeros(1, int(CLIP_SECONDS * SR))
        padded[0, : len(wav)] = torch.from_numpy(wav)
        spec = model.frontend(padded)
        tokens, grid = patchify(spec, model.patch)
        ok = valid_tokens(model.frontend.valid_frames(torch.tensor([len(wav)]), spec.shape[-1]), grid, model.patch)
        depth = len(model.encoder.blocks)
        out = mean_of_layers(model.encoder.forward_intermediates(tokens, grid, last_layers(average_last, depth)))[0]
    return out, ok[0], grid


def test_short_audio_padding_never_pooled(model):
    wav = _tone(0.3)  # 28 frames: 2 of the 7 columns of a window hold audio
    got = model.embed(wav, SR)
    out, ok, _ = _encode_one_window(model, wav)
    assert 0 < int(ok.sum()) < ok.numel()
    np.testing.assert_allclose(got, out[ok].mean(0).numpy(), atol=1e-5)
    assert not np.allclose(got, out.mean(0).numpy(), atol=1e-4)

    tiny = model.embed(_tone(0.005), SR, return_frames=True)  # shorter than one 25 ms frame
    assert np.isfinite(tiny[0]).all() and tiny[1].shape == (1, model.embed_dim)


# ---------------------------------------------------------------- CLI
def test_cli_folder_with_corrupt_file(exported, model, tmp_path):
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", _tone(0.6), SR)
    sf.write(folder / "sub" / "b.wav", _tone(1.3, 800.0), SR)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    out = tmp_path / "emb.npz"
    rc = embed_cli([str(folder), str(tmp_path / "missing.wav"), "--model", str(exported), "--out", str(out),
                    "--frames", "--device", "cpu", "--fp32", "--batch-size", "2", "--no-progress", "--pooling", "mean",
                    "--average-layers", "1"])
    assert rc == 0
    with np.load(out, allow_pickle=False) as npz:
        assert npz["embeddings"].shape == (2, model.embed_dim)
        paths = [Path(p).name for p in npz["paths"]]
        assert paths == ["a.wav", "b.wav"]
        assert sorted(Path(p).name for p in npz["failed_paths"]) == ["broken.wav", "missing.wav"]
        assert all(len(r) > 0 for r in npz["failed_reasons"])
        np.testing.assert_allclose(npz["embeddings"][1], model.embed(folder / "sub" / "b.wav"), atol=1e-5)
        offsets = npz["frame_offsets"]
        assert offsets[0] == 0 and offsets[-1] == len(npz["frames"]) == len(npz["frame_times"])

    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.wav").write_bytes(b"not audio")
    assert embed_cli([str(only_bad), "--model", str(exported), "--out", str(tmp_path / "none.npz"),
                      "--device", "cpu", "--no-progress"]) == 1
    assert not (tmp_path / "none.npz").exists()  # nothing embedded, nothing written (an existing file stays)


# ---------------------------------------------------------------- real data
def test_real_ogg_file(model):
    audio = DATA / "esc10" / "audio"
    files = sorted(audio.glob("*.ogg"))[:1] if audio.is_dir() else []
    if not files:
        pytest.skip(f"real data not present at {audio} (see /work/shared/data/README.md)")
    clip, frames, times = model.embed(files[0], return_frames=True)
    info = sf.info(files[0])
    assert clip.shape == (model.embed_dim,) and np.isfinite(clip).all()
    assert abs(times[-1] - info.duration) < 0.3



def _column_concatenations(model: Embedder, wav: np.ndarray, average_last: int = 1) -> torch.Tensor:
    """``(columns holding audio, F_p * D)``: the encoder's tokens of a clip no longer than one window, each time
    column's tokens concatenated in frequency order; computed here without the windowing of ``Embedder``, with
    the mean of the encoder's last ``average_last`` hidden states whatever ``model.average_layers`` is."""
    out, ok, grid = _encode_one_window(model, wav, average_last)
    out = out.view(grid[1], grid[0], -1)  # (T_p, F_p, D), time-major tokens
    cols = ok.view(grid[1], grid[0]).all(-1)
    return out[cols].reshape(int(cols.sum()), -1)


def test_freqcat_pooling_concatenates_frequency_tokens_per_column(model):
    wav = _tone(0.3)  # 2 of the window's columns hold audio
    got = model.embed(wav, SR, pooling="freqcat")
    f_p = model.window_grid[0]
    assert got.shape == (f_p * model.embed_dim,) == (model.pooled_dim("freqcat"),)
    np.testing.assert_allclose(got, _column_concatenations(model, wav).mean(0).numpy(), atol=1e-5)
    # The mean over the frequency blocks of the concatenation is the plain mean pooling.
    np.testing.assert_allclose(got.reshape(f_p, -1).mean(0), model.embed(wav, SR), atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        model.embed(wav, SR, pooling="max")


def test_freqcat_std_pooling_appends_population_std_over_columns(model):
    wav = _tone(0.9)  # one window, 6 columns hold audio
    got = model.embed(wav, SR, pooling="freqcat+std")
    half = model.pooled_dim("freqcat")
    assert got.shape == (2 * half,) == (model.pooled_dim("freqcat+std"),)
    np.testing.assert_allclose(got[:half], model.embed(wav, SR, pooling="freqcat"), atol=1e-6)
    np.testing.assert_allclose(got[half:], _column_concatenations(model, wav).numpy().std(0), atol=1e-5)  # ddof 0
    assert got[half:].max() > 1e-3
    # Stitched columns of a clip longer than a window: the statistics are those of the per-column concatenations.
    long = _tone(2.3, seed=2)
    feats = next(model.iter_features([torch.from_numpy(long)], pooling="freqcat+std"))
    col_cat = feats.col_cat.numpy()
    assert col_cat.shape == (len(feats.times), half)
    np.testing.assert_allclose(model.embed(long, SR, pooling="freqcat+std"),
                               np.concatenate([col_cat.mean(0), col_cat.std(0)]), atol=1e-5)
    # "freqcat" features serve "freqcat+std"; features without column concatenations do not.
    np.testing.assert_allclose(next(model.iter_features([torch.from_numpy(wav)], pooling="freqcat"))
                               .pooled("freqcat+std").numpy(), got, atol=1e-6)
    with pytest.raises(ValueError, match="column concatenations"):
        next(model.iter_features([torch.from_numpy(wav)], pooling="mean")).pooled("freqcat+std")
    # A clip of one column has no spread over time: a zero std half, not NaN.
    one, _, times = model.embed(_tone(0.1), SR, pooling="freqcat+std", return_frames=True)  # 8 frames
    assert len(times) == 1
    np.testing.assert_array_equal(one[half:], 0.0)
    np.testing.assert_allclose(one[:half], model.embed(_tone(0.1), SR, pooling="freqcat"), atol=1e-6)


# ---------------------------------------------------------------- layer averaging
def test_average_layers_embeds_the_mean_of_the_last_blocks(ckpt, model, exported, tmp_path):
    depth = model.encoder_config.depth
    assert model.average_layers == 1 and depth > 2
    avg = load(ckpt, device="cpu", average_layers=2)
    assert avg.average_layers == 2 and "average_layers=2" in repr(avg)
    wav = _tone(0.9)  # one window, 6 columns hold audio
    # By hand, with the default embedder's encoder (same weights) asked for the mean of its last 2 blocks.
    expected = _column_concatenations(model, wav, average_last=2).mean(0)
    np.testing.assert_allclose(avg.embed(wav, SR, pooling="freqcat"), expected.numpy(), atol=1e-5)
    f_p = model.window_grid[0]
    np.testing.assert_allclose(avg.embed(wav, SR), expected.view(f_p, -1).mean(0).numpy(), atol=1e-5)
    assert not np.allclose(avg.embed(wav, SR), model.embed(wav, SR), atol=1e-3)
    # "all" is depth + 1 (the blocks and the patch embedding), 1 the default; a run-time setting that an export
    # does not store.
    every = load(exported, device="cpu", average_layers="all")
    assert every.average_layers == depth + 1
    np.testing.assert_array_equal(every.embed(wav, SR),
                                  load(exported, device="cpu", average_layers=depth + 1).embed(wav, SR))
    assert not np.allclose(every.embed(wav, SR), load(exported, device="cpu", average_layers=depth).embed(wav, SR),
                           atol=1e-3)
    np.testing.assert_array_equal(load(exported, device="cpu", average_layers=1).embed(wav, SR, pooling="mean"),
                                  model.embed(wav, SR))
    rnd = Embedder.from_config(ENCODER_SIZES["mini"], clip_seconds=CLIP_SECONDS, device="cpu", average_layers="all")
    assert rnd.average_layers == depth + 1 and "average_layers" not in rnd.export_config()
    for bad in (0, depth + 2, True, "last", 2.0):
        with pytest.raises(ValueError, match=rf"average_layers must be an int in 1\.\.{depth + 1}") as info:
            load(exported, device="cpu", average_layers=bad)
        assert not isinstance(info.value, CheckpointError)  # a bad setting, not a bad model file
    # The CLI: "all" reaches the model; beyond the depth is a clear error (status 1), malformed a usage error.
    clip = tmp_path / "a.wav"
    sf.write(clip, wav, SR)
    out = tmp_path / "avg.npz"
    argv = [str(clip), "--model", str(exported), "--out", str(out), "--device", "cpu", "--no-progress", "--fp32"]
    assert embed_cli([*argv, "--average-layers", "all"]) == 0
    with np.load(out, allow_pickle=False) as npz:
        np.testing.assert_allclose(npz["embeddings"][0], every.embed(clip), atol=1e-6)
    assert embed_cli([*argv, "--average-layers", str(depth + 2)]) == 1
    with pytest.raises(SystemExit):
        embed_cli([*argv, "--average-layers", "0"])


def test_export_without_a_recorded_readout_keeps_mean_pooling_and_says_so(exported, model, tmp_path, caplog):
    """Exports written before read-outs were recorded load as before: mean pooling of the final block."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes())
    cfg = json.loads((exported / "config.json").read_text())
    del cfg["readout"]
    (old / "config.json").write_text(json.dumps(cfg))
    import logging

    with caplog.at_level(logging.INFO, logger="ajepa.inference"):
        legacy = load(old, device="cpu")
    assert legacy.pooling == "mean" and legacy.average_layers == 1
    assert "records no read-out" in caplog.text
    wav = _tone(0.9)
    np.testing.assert_array_equal(legacy.embed(wav, SR), model.embed(wav, SR))
    cfg["readout"] = {"pooling": "median", "average_layers": 1}
    (old / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="readout"):
        load(old, device="cpu")


def test_auto_bf16_follows_the_cpu_and_stays_within_cosine_0999_of_fp32():
    from ajepa.runtime import cpu_has_native_bf16

    auto = load_auto(device="cpu")
    assert auto.bf16 == "auto" and auto.uses_bf16() == cpu_has_native_bf16()
    assert not auto.uses_bf16(torch.device("meta"))  # neither CUDA nor CPU (e.g. MPS): always fp32
    fp32 = load_auto(device="cpu", bf16=False)
    bf16 = load_auto(device="cpu", bf16=True)  # forced, so the closeness is checked on every CPU
    assert not fp32.uses_bf16() and bf16.uses_bf16()
    rng = np.random.default_rng(0)
    clips = [_tone(s, freq=f) + rng.standard_normal(int(s * SR)).astype(np.float32) * 0.05
             for s, f in ((0.4, 300.0), (1.0, 880.0), (3.3, 150.0))]
    a, b = fp32.embed(clips, SR), bf16.embed(clips, SR)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.999, cos
    assert not np.array_equal(a, b)  # bf16 really ran
    with pytest.raises(ValueError, match="bf16"):
        load_auto(device="cpu", bf16="yes")
    # The random baselines of the evaluations are fp32 whatever the CPU.
    assert not Embedder.from_config(ENCODER_SIZES["mini"], clip_seconds=CLIP_SECONDS, device="cpu").uses_bf16()
