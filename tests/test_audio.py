"""load_audio / resample / list_audio_files: formats, mixdown, resampling, and every bad-input error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from ajepa.errors import AudioInputError
from ajepa.features.audio import AUDIO_EXTENSIONS, list_audio_files, load_audio, resample


def _sine(freq: float, sr: int, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wav: torch.Tensor, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav.numpy() * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sr)[spectrum.argmax()])


@pytest.mark.parametrize("orig_sr", [44100, 8000])
def test_resampled_sine_keeps_its_frequency(orig_sr: int) -> None:
    wav = load_audio(_sine(1000.0, orig_sr), sr=orig_sr)
    assert wav.dtype == torch.float32 and wav.ndim == 1
    assert abs(len(wav) - 8000) <= 1
    assert abs(_peak_hz(wav, 16000) - 1000.0) <= 2.0  # FFT bin width is 2 Hz for 0.5 s
    # Band-limited: the amplitude survives (naive interpolation would too, but aliasing would not).
    assert wav[1000:-1000].abs().max() == pytest.approx(0.5, abs=0.02)


def test_resample_is_band_limited() -> None:
    # 10 kHz is above the 8 kHz target Nyquist: it must be filtered out, not aliased down to 6 kHz
    # (linear interpolation keeps almost all of its amplitude).
    wav = resample(torch.from_numpy(_sine(10000.0, 44100)), 44100, 16000)
    assert wav[1000:-1000].abs().max() < 0.01


def test_resample_same_rate_is_identity() -> None:
    wav = torch.randn(100)
    assert resample(wav, 16000, 16000) is wav


def test_stereo_mixdown_is_channel_mean() -> None:
    left, right = _sine(440.0, 16000), _sine(880.0, 16000)
    wav = load_audio(np.stack([left, right]), sr=16000)
    np.testing.assert_allclose(wav.numpy(), (left + right) / 2, atol=1e-6)


def test_torch_and_int_arrays() -> None:
    x = _sine(440.0, 16000)
    pcm16 = (x * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm16, sr=16000).numpy(), x, atol=1e-4)
    pcm32 = (x.astype(np.float64) * (2**31 - 1)).astype(np.int32)
    np.testing.assert_allclose(load_audio(torch.from_numpy(pcm32), sr=16000).numpy(), x, atol=1e-6)
    np.testing.assert_allclose(load_audio(torch.from_numpy(x).double(), sr=16000).numpy(), x, atol=1e-7)


def test_min_samples_pads_at_the_end() -> None:
    wav = load_audio(np.ones(100, np.float32), sr=16000, min_samples=400)
    assert wav.shape == (400,) and wav[:100].eq(1).all() and wav[100:].eq(0).all()


@pytest.mark.parametrize(
    ("suffix", "subtype", "atol"),
    [
        (".wav", "PCM_16", 1e-4),
        (".wav", "PCM_24", 1e-6),
        (".wav", "PCM_32", 1e-6),
        (".wav", "PCM_U8", 1e-2),
        (".wav", "FLOAT", 0.0),
        (".flac", "PCM_16", 1e-4),
        (".ogg", "VORBIS", None),
    ],
)
def test_file_formats_round_trip(tmp_path, suffix: str, subtype: str, atol: float | None) -> None:
    assert suffix in AUDIO_EXTENSIONS
    x = _sine(1000.0, 16000)
    path = tmp_path / f"clip{suffix}"
    sf.write(path, x, 16000, subtype=subtype)
    wav = load_audio(path)
    assert wav.dtype == torch.float32
    if atol is None:  # lossy: same length and frequency
        assert abs(len(wav) - len(x)) <= 1 and abs(_peak_hz(wav, 16000) - 1000) <= 2
    else:
        np.testing.assert_allclose(wav.numpy(), x, atol=atol)


def test_stereo_file_at_other_rate(tmp_path) -> None:
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([_sine(1000.0, 44100), np.zeros(22050, np.float32)], axis=1), 44100)
    wav = load_audio(path, sr=44100)
    assert abs(len(wav) - 8000) <= 1 and abs(_peak_hz(wav, 16000) - 1000) <= 2
    assert wav[1000:-1000].abs().max() == pytest.approx(0.25, abs=0.02)


def _bad_file(tmp_path, kind: str):
    if kind == "missing":
        return tmp_path / "nope.wav"
    if kind == "corrupt":
        path = tmp_path / "noise.wav"
        path.write_bytes(np.random.default_rng(0).bytes(2048))
        return path
    if kind == "empty_file":
        path = tmp_path / "empty.wav"
        path.write_bytes(b"")
        return path
    if kind == "zero_length":
        path = tmp_path / "zero.wav"
        sf.write(path, np.zeros(0, np.float32), 16000)
        return path
    if kind == "directory":
        return tmp_path
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "corrupt", "empty_file", "zero_length", "directory"])
def test_bad_files_raise(tmp_path, kind: str) -> None:
    path = _bad_file(tmp_path, kind)
    with pytest.raises(AudioInputError, match=str(path.name)):
        load_audio(path)


def test_file_with_wrong_sr_raises(tmp_path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, _sine(440.0, 8000), 8000)
    with pytest.raises(AudioInputError, match="8000"):
        load_audio(path, sr=16000)


@pytest.mark.parametrize(
    ("array", "sr", "reason"),
    [
        (np.zeros(0, np.float32), 16000, "zero-length"),
        (np.array([0.0, np.nan, 0.1], np.float32), 16000, "NaN"),
        (np.array([0.0, np.inf, 0.1], np.float32), 16000, "NaN or inf"),
        (np.zeros(100, np.float32), None, "sample rate"),
        (np.zeros((2, 2, 100), np.float32), 16000, "shape"),
        (np.zeros((100, 2), np.float32), 16000, "channels-last"),
        (np.zeros((20, 100), np.float32), 16000, "shape"),
        (np.zeros(()), 16000, "shape"),
        (np.zeros(100, np.complex64), 16000, "dtype"),
        (np.zeros(100, bool), 16000, "dtype"),
        (np.zeros(100, object), 16000, "dtype"),
        (np.zeros(100, np.int64), 16000, "dtype"),
        (torch.zeros(100, dtype=torch.complex64), 16000, "dtype"),
        (torch.zeros(100, dtype=torch.bool), 16000, "dtype"),
        (np.zeros(100, np.float32), -1, "sample rate"),
        (np.zeros(100, np.float32), 16000.5, "sample rate"),
    ],
)
def test_bad_arrays_raise(array, sr, reason: str) -> None:
    with pytest.raises(AudioInputError, match=reason):
        load_audio(array, sr=sr)


def test_unsupported_source_type_raises() -> None:
    with pytest.raises(AudioInputError, match="list"):
        load_audio([0.0, 0.1], sr=16000)  # type: ignore[arg-type]


def test_list_audio_files_folder_and_manifests(tmp_path) -> None:
    (tmp_path / "b").mkdir()
    for name in ["b/2.wav", "a.FLAC", "c.ogg", "notes.txt", "b/1.wav"]:
        (tmp_path / name).write_bytes(b"")
    found = list_audio_files(tmp_path)
    assert found == sorted(str(tmp_path / n) for n in ["a.FLAC", "b/1.wav", "b/2.wav", "c.ogg"])

    (tmp_path / "m.txt").write_text("# comment\nb/1.wav\n\n/abs/x.wav\nmissing.wav\n")
    expected = [str(tmp_path / "b/1.wav"), "/abs/x.wav", str(tmp_path / "missing.wav")]
    assert list_audio_files(tmp_path / "m.txt") == expected
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps({"path": p, "label": 1}) for p in ["a.FLAC", "c.ogg"]))
    assert list_audio_files(tmp_path / "m.jsonl") == [str(tmp_path / "a.FLAC"), str(tmp_path / "c.ogg")]
    (tmp_path / "m.csv").write_text("label,path\n1,c.ogg\n2,b/2.wav\n")
    assert list_audio_files(tmp_path / "m.csv") == [str(tmp_path / "c.ogg"), str(tmp_path / "b/2.wav")]
    (tmp_path / "h.csv").write_text("file,label\nc.ogg,1\n")  # header without "path": first column
    assert list_audio_files(tmp_path / "h.csv") == [str(tmp_path / "c.ogg")]
    (tmp_path / "n.csv").write_text("c.ogg,1\na.FLAC,2\n")  # no header at all
    assert list_audio_files(tmp_path / "n.csv") == [str(tmp_path / "c.ogg"), str(tmp_path / "a.FLAC")]


def test_list_audio_files_errors(tmp_path) -> None:
    with pytest.raises(AudioInputError, match="no such"):
        list_audio_files(tmp_path / "absent")
    (tmp_path / "bad.jsonl").write_text('{"file": "x.wav"}\n')
    with pytest.raises(AudioInputError, match="bad.jsonl:1"):
        list_audio_files(tmp_path / "bad.jsonl")
    (tmp_path / "x.yaml").write_text("a: 1\n")
    with pytest.raises(AudioInputError, match="manifest"):
        list_audio_files(tmp_path / "x.yaml")


@pytest.mark.parametrize(
    ("pattern", "sr"),
    [("esc10/audio/*.ogg", 44100), ("fsdd/recordings/*.wav", 8000), ("speech_commands_v2_test_dev/yes/*.wav", 16000)],
)
def test_real_files(shared_data, pattern: str, sr: int) -> None:
    files = sorted(shared_data.glob(pattern))
    if not files:
        pytest.skip(f"no files match {pattern} under {shared_data}")
    info = sf.info(files[0])
    assert info.samplerate == sr
    wav = load_audio(files[0], min_samples=16000)
    assert wav.dtype == torch.float32 and wav.ndim == 1
    assert abs(len(wav) - max(16000, round(info.frames * 16000 / sr))) <= 1
    assert torch.isfinite(wav).all() and wav.abs().max() <= 1.0 and wav.abs().max() > 0
