"""Reading audio: files or in-memory arrays -> mono float32 waveforms at the model's sample rate.

Everything that enters the model goes through :func:`load_audio`, so the rules live in one place:

- Files are decoded by soundfile (libsndfile): WAV (8/16/24/32-bit int and float), FLAC, Ogg Vorbis/Opus,
  MP3 (libsndfile >= 1.1), AIFF, ... Integer PCM comes back scaled to [-1, 1]; float data is kept as stored.
- Arrays (numpy or torch) need an explicit ``sr``. Accepted shapes are ``(N,)`` and channels-first
  ``(C, N)`` with ``C <= 8`` and ``C < N``. Anything else is rejected, including channels-last ``(N, C)``
  (the usual soundfile layout): the two layouts cannot be told apart reliably, so we ask for ``arr.T``
  instead of guessing. Integer arrays are scaled by their full range (int16 / 32768, int32 / 2**31,
  int8 / 128, uint8 as offset-binary 8-bit PCM); float arrays are kept; bool, complex, object,
  int64 and other unsigned dtypes are rejected.
- Multichannel audio is mixed to mono by the mean over channels.
- Resampling is band-limited (windowed sinc, :func:`torchaudio.functional.resample`).
- Audio shorter than ``min_samples`` (after resampling) is zero-padded at the end; callers that batch
  clips carry the real length separately so padding is never mistaken for signal.

Bad input raises :class:`ajepa.errors.AudioInputError` naming the source and the reason.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from ajepa.errors import AudioInputError

__all__ = ["AUDIO_EXTENSIONS", "MAX_CHANNELS", "MAX_CLIP_SECONDS", "clip_samples", "collect_audio_files", "decoded", "read_window",
           "resampled_length", "list_audio_files", "load_audio", "resample"]

MAX_CHANNELS = 8

# libsndfile format name -> the suffixes such files usually carry. Formats that are rarely audio in a
# data folder (RAW needs out-of-band parameters; MAT4/MAT5 and HTK files are mostly not sound) are left out
# so that scanning a folder does not pick them up.
_FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "WAV": (".wav",),
    "WAVEX": (".wav",),
    "RF64": (".rf64",),
    "W64": (".w64",),
    "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"),
    "MP3": (".mp3",),
    "AIFF": (".aiff", ".aif", ".aifc"),
    "AU": (".au", ".snd"),
    "CAF": (".caf",),
    "NIST": (".nist", ".sph"),
    "IRCAM": (".sf",),
    "VOC": (".voc",),
    "AVR": (".avr",),
    "SVX": (".8svx", ".iff"),
    "PAF": (".paf",),
    "PVF": (".pvf",),
    "SD2": (".sd2",),
    "SDS": (".sds",),
    "WVE": (".wve",),
    "XI": (".xi",),
}

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    suffix for name in sf.available_formats() for suffix in _FORMAT_SUFFIXES.get(name, ())
)

# Full-scale divisors for integer PCM; uint8 is offset binary (8-bit WAV), hence the offset.
_INT_SCALE: dict[np.dtype, tuple[float, float]] = {
    np.dtype(np.int8): (0.0, 128.0),
    np.dtype(np.uint8): (128.0, 128.0),
    np.dtype(np.int16): (0.0, 32768.0),
    np.dtype(np.int32): (0.0, 2147483648.0),
}
_TORCH_TO_NUMPY_INT = {torch.int8: np.int8, torch.uint8: np.uint8, torch.int16: np.int16, torch.int32: np.int32}


# Float audio lives in [-1, 1]; the log-mel's power spectrum overflows float32 from about 1e18. Far above any
# real signal, far below the overflow.
MAX_ABS_SAMPLE = 1e12

# The longest training crop or encoder window a config (or a model file) may ask for: ten times AudioSet's clips.
MAX_CLIP_SECONDS = 100.0


def clip_samples(clip_seconds: float, sample_rate: int) -> int:
    """Samples in a clip of ``clip_seconds`` at ``sample_rate``: the one rounding of a crop or window length."""
    return int(round(clip_seconds * sample_rate))


def resample(wav: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Band-limited resampling along the last axis.

    Args:
        wav: ``(..., N)`` float waveform.
        orig_sr: its sample rate in Hz.
        target_sr: the wanted sample rate in Hz.

    Returns:
        ``(..., N')`` with ``N' = ceil(N * target_sr / orig_sr)``; ``wav`` itself when the rates match.
    """
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise AudioInputError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return wav
    return _resampler(orig_sr, target_sr).to(wav.device)(wav)


@functools.lru_cache(maxsize=16)
def _resampler(orig_sr: int, target_sr: int) -> torchaudio.transforms.Resample:
    # Building the windowed-sinc kernel costs more than applying it to a few seconds of audio (e.g. 44.1 -> 16 kHz
    # has 441 phases), and a corpus has only a handful of distinct rates: build each kernel once per process.
    return torchaudio.transforms.Resample(orig_sr, target_sr)


def load_audio(
    source: str | os.PathLike | np.ndarray | torch.Tensor,
    sr: int | None = None,
    target_sr: int = 16000,
    min_samples: int = 0,
) -> torch.Tensor:
    """Load a file or take an array and return a mono float32 waveform at ``target_sr``.

    Args:
        source: a path to an audio file, or a numpy array / torch tensor of shape ``(N,)`` or ``(C, N)``.
        sr: the sample rate of an array (required for arrays). For a file it is optional; when given it must
            match the file's own rate (a mismatch is an error rather than a silent reinterpretation).
        target_sr: the sample rate of the result.
        min_samples: shorter results are zero-padded at the end up to this many samples.

    Returns:
        ``(N,)`` float32 CPU tensor; integer input lands in [-1, 1], float input is kept as given.

    Raises:
        AudioInputError: missing/unreadable file, empty or non-finite audio, missing ``sr`` for an array,
            unsupported shape or dtype.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        data, file_sr = _read_file(Path(source))
        if sr is not None and _check_sr(sr, name) != file_sr:
            raise AudioInputError(f"{name}: sr={sr} was given but the file is stored at {file_sr} Hz")
        sr = file_sr
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        name = f"{type(source).__name__} of shape {tuple(source.shape)}"
        if sr is None:
            raise AudioInputError(f"{name}: a raw array needs its sample rate; pass sr=...")
        sr = _check_sr(sr, name)
        data = _array_to_channels_first(source, name)
    else:
        raise AudioInputError(f"unsupported audio source of type {type(source).__name__}; pass a path or an array")

    if data.shape[-1] == 0:
        raise AudioInputError(f"{name}: zero-length audio")
    if not bool(torch.isfinite(data).all()):
        raise AudioInputError(f"{name}: audio contains NaN or infinite samples")
    peak = float(data.abs().max())
    if peak > MAX_ABS_SAMPLE:
        raise AudioInputError(f"{name}: sample values reach {peak:.3g}, which overflow the log-mel front end (float "
                              f"audio is expected in [-1, 1]; at most {MAX_ABS_SAMPLE:.0e} is accepted)")

    wav = data.mean(dim=0) if data.shape[0] > 1 else data[0]
    wav = resample(wav, sr, _check_sr(target_sr, "target_sr"))
    if wav.shape[-1] < min_samples:
        wav = torch.nn.functional.pad(wav, (0, min_samples - wav.shape[-1]))
    return wav.contiguous()


def _check_sr(sr: int | float, name: str) -> int:
    valid = isinstance(sr, (int, float, np.integer, np.floating)) and not isinstance(sr, bool)
    if not (valid and math.isfinite(sr) and sr > 0 and sr == int(sr)):
        raise AudioInputError(f"{name}: sample rate must be a positive integer, got {sr!r}")
    return int(sr)


def _read_file(path: Path) -> tuple[torch.Tensor, int]:
    """Decode a file into ``(C, N)`` float32 and its sample rate."""
    if not path.exists():
        raise AudioInputError(f"{path}: no such file")
    if not path.is_file():
        raise AudioInputError(f"{path}: not a regular file")
    try:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        # libsndfile reports corrupt, truncated and unknown formats alike; keep its reason in the message.
        raise AudioInputError(f"{path}: unreadable audio file ({err})") from err
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(file_sr)


def _array_to_channels_first(arr: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """Validate dtype and shape of an in-memory array; return ``(C, N)`` float32 on the CPU."""
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu()
        if arr.dtype in _TORCH_TO_NUMPY_INT:
            arr = arr.numpy()
        elif arr.dtype.is_floating_point:
            arr = arr.to(torch.float32)
        else:
            raise AudioInputError(f"{name}: unsupported dtype {arr.dtype}; use float or int8/16/32 PCM")
    if isinstance(arr, np.ndarray):
        if arr.dtype in _INT_SCALE:
            offset, scale = _INT_SCALE[arr.dtype]
            arr = torch.from_numpy((arr.astype(np.float32) - offset) / scale)
        elif arr.dtype.kind == "f":
            arr = torch.from_numpy(arr.astype(np.float32, copy=False))
        else:
            raise AudioInputError(f"{name}: unsupported dtype {arr.dtype}; use float or int8/16/32 PCM")

    if arr.ndim == 1:
        return arr.unsqueeze(0)
    if arr.ndim == 2:
        channels, samples = arr.shape
        if channels <= MAX_CHANNELS and channels < samples:
            return arr
        if samples <= MAX_CHANNELS and samples < channels:
            raise AudioInputError(
                f"{name}: looks like channels-last (N, C); pass channels-first (C, N), e.g. arr.T"
            )
    raise AudioInputError(
        f"{name}: unsupported shape; expected (N,) or channels-first (C, N) with C <= {MAX_CHANNELS} and C < N"
    )


def collect_audio_files(inputs: Iterable[str | os.PathLike]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand files, folders and manifests into audio paths (first occurrence order, no duplicates).

    Returns ``(paths, failures)``; an input that cannot be listed is a failure ``(input, reason)``.
    """
    paths: dict[str, None] = {}
    failures: list[tuple[str, str]] = []
    for item in inputs:
        try:
            listed = list_audio_files(item)
        except (AudioInputError, OSError) as exc:
            failures.append((os.fspath(item), str(exc)))
            continue
        if not listed and Path(item).is_dir():
            failures.append((os.fspath(item), "folder holds no audio files"))
        paths.update(dict.fromkeys(listed))
    return list(paths), failures


def list_audio_files(root_or_manifest: str | os.PathLike) -> list[str]:
    """List the audio files of a folder or a manifest.

    A folder is searched recursively for suffixes in :data:`AUDIO_EXTENSIONS` (case-insensitive) and the
    result is sorted. A manifest is a ``.csv`` (the ``path`` column, else the first column; a first row
    that names a ``path`` column or whose first cell has no audio suffix is taken as a header), a ``.jsonl``
    (``{"path": ...}`` per line) or a ``.txt`` (one path per line; blank lines and ``#`` comments skipped).
    Relative manifest paths resolve against the manifest's folder. Entries that do not exist are kept:
    the dataset counts unreadable files when it meets them. A single audio file lists itself.

    Raises:
        AudioInputError: the root does not exist, or the manifest cannot be parsed.
    """
    root = Path(root_or_manifest).expanduser()
    if not root.exists():
        raise AudioInputError(f"{root}: no such folder or manifest")
    if root.is_dir():
        return sorted(
            str(p) for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
        )
    suffix = root.suffix.lower()
    if suffix in AUDIO_EXTENSIONS:
        return [str(root)]
    readers = {".csv": _manifest_csv, ".jsonl": _manifest_jsonl, ".txt": _manifest_txt}
    if suffix not in readers:
        raise AudioInputError(f"{root}: not a folder, an audio file or a manifest (.csv, .jsonl, .txt)")
    try:
        with open(root, newline="", encoding="utf-8") as fh:
            entries = readers[suffix](fh, root)
    except UnicodeDecodeError as exc:
        raise AudioInputError(f"{root}: not a text manifest (byte {exc.start} is not UTF-8)") from None
    except (OSError, csv.Error) as exc:
        raise AudioInputError(f"{root}: unreadable manifest ({exc})") from None
    return [str(_resolve(entry, root.parent)) for entry in entries]


def _resolve(entry: str, base: Path) -> Path:
    path = Path(entry).expanduser()
    return path if path.is_absolute() else base / path


def _manifest_csv(fh, name: Path) -> list[str]:
    rows = [row for row in csv.reader(fh) if row and any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip() for cell in rows[0]]
    if "path" in header:
        column = header.index("path")
        rows = rows[1:]
    else:
        column = 0
        if Path(header[0]).suffix.lower() not in AUDIO_EXTENSIONS:
            rows = rows[1:]
    try:
        return [row[column].strip() for row in rows]
    except IndexError as err:
        raise AudioInputError(f"{name}: a row has no column {column}") from err


def _manifest_jsonl(fh, name: Path) -> list[str]:
    entries = []
    for line_no, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            entries.append(str(record["path"]))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise AudioInputError(f"{name}:{line_no}: expected a JSON object with a 'path' key") from err
    return entries


def _manifest_txt(fh, name: Path) -> list[str]:
    lines = (line.strip() for line in fh)
    return [line for line in lines if line and not line.startswith("#")]


def resampled_length(frames: int, orig_sr: int, target_sr: int) -> int:
    """Samples of a ``frames``-long signal at ``orig_sr`` after :func:`ajepa.features.audio.resample`."""
    return frames if orig_sr == target_sr else -(-frames * target_sr // orig_sr)


# Target-rate samples decoded on each side of a window: the resampling kernel reaches ~6 output samples
# (torchaudio's default lowpass width), so the samples kept never see the window's cut edges.
_WINDOW_MARGIN = 64


def decoded(data: np.ndarray, orig_sr: int, target_sr: int) -> torch.Tensor:
    """``(N, C)`` float32 frames from soundfile -> the mono ``(N',)`` waveform at ``target_sr`` (checked for empty
    and non-finite audio by :func:`ajepa.features.audio.load_audio`)."""
    return load_audio(np.ascontiguousarray(data.T), sr=orig_sr, target_sr=target_sr)


def read_window(audio: sf.SoundFile, start: int, length: int, target_sr: int) -> torch.Tensor | None:
    """Samples ``[start, start + length)`` of an open file resampled to ``target_sr``, decoding only their
    neighbourhood.

    The decoded span starts on a sample where the source and target grids coincide (a multiple of
    ``orig_sr / gcd``), so resampling it puts every output sample at the same instant, with the same filter
    phase, as resampling the whole file; the result matches a full decode to float rounding. Returns None when
    the file yields fewer samples than its header promised (the caller then decodes the whole file).
    """
    orig_sr, frames = audio.samplerate, audio.frames
    g = math.gcd(orig_sr, target_sr)
    step_src, step_tgt = orig_sr // g, target_sr // g
    margin = 0 if orig_sr == target_sr else _WINDOW_MARGIN
    first = max(0, start - margin) // step_tgt * step_tgt  # target index on the common grid
    src_start = first // step_tgt * step_src
    src_stop = min(frames, -(-(start + length + margin) * orig_sr // target_sr) + 1)
    audio.seek(src_start)
    data = audio.read(src_stop - src_start, dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        return None
    wav = decoded(data, orig_sr, target_sr)
    clip = wav[start - first:start - first + length]
    return clip.clone() if clip.shape[0] == length else None
