"""Audio files -> fixed-length training clips, and the batch sampler that makes runs resumable.

Every random choice of a sample (crop offset, gain) comes from ``np.random.default_rng((seed, index,
batch_index))`` and every permutation from ``(seed, epoch)``. A training step therefore sees the same clips
whatever the number of workers, and a resumed run (``start_batch``) continues exactly where it stopped.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ajepa.errors import AudioInputError, ConfigError
from ajepa.features.audio import clip_samples, decoded, list_audio_files, read_window, resampled_length

logger = logging.getLogger(__name__)

SAMPLINGS = ("file", "duration")

# What a broken or unreadable file can raise while decoding; anything else is a bug and propagates.
_READ_ERRORS = (AudioInputError, sf.SoundFileError, OSError, EOFError)


def _split_key(key: int | tuple[int, int]) -> tuple[int, int]:
    """``index`` or ``(index, batch_index)`` -> both; a bare index counts as batch 0."""
    if isinstance(key, (int, np.integer)):
        return int(key), 0
    index, batch_index = key
    return int(index), int(batch_index)


class AudioClipDataset(Dataset):
    """Fixed-length clips cut from audio files, with gain jitter.

    Items are ``{"wav": (N,) float32, "length": int, "batch_index": int, "path": str, "skipped": list[str]}``
    with ``N = round(clip_seconds * sample_rate)``. Longer files are cropped (at a random offset when
    ``random_crop``, else from the start); shorter ones are zero-padded at the end and ``length`` counts the
    real samples.

    Unreadable files (corrupt, empty, missing) never end a run: a warning is logged once per file and per
    process, the reason is kept in ``failures`` (path -> reason), and the next readable file in list order
    is returned instead. ``failures`` lives in the process that read the file, so with DataLoader workers the
    main process does not see it; it sees ``"skipped"`` instead: the paths that failed before this item's
    file was found (a file may be reported by several items; deduplicate by path).

    Args:
        files: a list of paths, or a folder / manifest for :func:`ajepa.features.audio.list_audio_files`.
        clip_seconds: clip duration.
        sample_rate: files are resampled to this rate.
        seed: base seed of the per-item random choices.
        gain_db: ``(low, high)`` uniform gain range in dB, or None for no gain. The gain is capped so that
            the peak never exceeds 1 (no clipping).
        random_crop: random crop offset for long files; False takes the first ``clip_seconds``.
        exclude: patterns of files to leave out of a folder or manifest (:func:`exclude_files`), e.g. the
            sub-folders of the corpora an evaluation holds out.
        sampling: ``"file"``: each file is one item per epoch; ``"duration"``: a file is
            ``max(1, round(duration / clip_seconds))`` items, each with its own random crop, so every second of
            audio is equally likely to be trained on and long recordings are not under-sampled next to short
            ones. Durations come from the file headers (``soundfile.info``); an unreadable header counts once.
        crops: crops cut from an item's file, each at its own random offset (WavJEPA, M2D: several views of one
            long recording per step; the file is decoded once when cached). With ``crops > 1`` an item's ``wav``
            is ``(crops, N)`` and ``length`` a list; :func:`collate_clips` flattens them into the batch.
        cache_mb: keep up to this many MiB of decoded 16 kHz waveforms in memory (per process), filled in the
            order files are first read and never evicted; 0 turns it off. On a small corpus read many times it
            removes the file opening and decoding that is most of the loading cost. A clip cut from a cached
            long file is cut from its full decode rather than decoded around the crop: the same samples to
            float rounding where the file is resampled, exactly the same otherwise.

    Raises:
        AudioInputError: no files given or found; every file unreadable (from ``__getitem__``).
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike] | str | os.PathLike,
        clip_seconds: float,
        sample_rate: int = 16000,
        seed: int = 0,
        gain_db: tuple[float, float] | None = (-6.0, 6.0),
        random_crop: bool = True,
        sampling: str = "file",
        exclude: Sequence[str] = (),
        cache_mb: float = 0.0,
        crops: int = 1,
    ) -> None:
        if isinstance(files, (str, os.PathLike)):
            root = os.fspath(files)
            self.files = list_audio_files(root)
            if exclude:
                base = root if os.path.isdir(root) else os.path.dirname(root)
                self.files = exclude_files(self.files, base, exclude)
            if not self.files:
                raise AudioInputError(f"{root}: no audio files found" + (f" outside {list(exclude)}" if exclude else ""))
        elif exclude:
            raise ConfigError("exclude applies to a folder or manifest root, not to a list of files")
        else:
            self.files = [os.fspath(f) for f in files]
            if not self.files:
                raise AudioInputError("AudioClipDataset was given an empty list of files")
        if clip_seconds <= 0:
            raise ConfigError(f"clip_seconds must be > 0, got {clip_seconds}")
        if gain_db is not None and gain_db[0] > gain_db[1]:
            raise ConfigError(f"gain_db must be (low, high) with low <= high, got {gain_db}")
        if isinstance(crops, bool) or not isinstance(crops, int) or crops < 1:
            raise ConfigError(f"crops must be an int >= 1, got {crops!r}")
        self.crops = crops
        self.clip_seconds = clip_seconds
        self.clip_samples = clip_samples(clip_seconds, sample_rate)
        self.sample_rate = sample_rate
        self.seed = seed
        self.gain_db = gain_db
        self.random_crop = random_crop
        self.failures: dict[str, str] = {}
        if cache_mb < 0:
            raise ConfigError(f"cache_mb must be >= 0, got {cache_mb}")
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[str, torch.Tensor] = {}
        self._cached_bytes = 0
        if sampling not in SAMPLINGS:
            raise ConfigError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.sampling = sampling
        counts = [crops_per_file(f, clip_seconds) for f in self.files] if sampling == "duration" else None
        # Item -> file index; None means the identity (one item per file).
        self.item_files = None if counts is None else np.repeat(np.arange(len(self.files)), counts)

    def __len__(self) -> int:
        return len(self.files) if self.item_files is None else len(self.item_files)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, batch_index = _split_key(key)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        first = index if self.item_files is None else int(self.item_files[index])
        skipped: list[str] = []
        # Walk forward from the item's file at most once around the list, so a dead corpus fails instead of spinning.
        rng = np.random.default_rng((self.seed, index, batch_index))
        for offset in range(len(self.files)):
            path = self.files[(first + offset) % len(self.files)]
            got = self.read_clip(path, rng)
            if got is not None:
                break
            skipped.append(path)
        else:
            raise AudioInputError(
                f"all {len(self.files)} audio files are unreadable; first failure: "
                f"{skipped[0]}: {self.failures.get(skipped[0], '?')}"
            )
        clip, length = got
        if self.crops == 1:
            return {"wav": apply_gain(clip, self.gain_db, rng), "length": length, "batch_index": batch_index,
                    "path": path, "skipped": skipped}
        clips = [(clip, length)] + [self.read_clip(path, rng) or (clip, length) for _ in range(self.crops - 1)]
        return {"wav": torch.stack([apply_gain(c, self.gain_db, rng) for c, _ in clips]),
                "length": [n for _, n in clips], "batch_index": batch_index, "path": path, "skipped": skipped}

    def read_clip(self, path: str, rng: np.random.Generator) -> tuple[torch.Tensor, int] | None:
        """One clip ``(clip_samples,)`` of the file at 16 kHz and its real length (the rest is zero-padding), or
        None (recorded in ``failures``) when the file cannot be used. ``rng`` draws the crop offset."""
        if path in self.failures:
            return None
        cached = self._cache.get(path)
        if cached is not None:
            return self.crop(cached, rng)
        try:
            with sf.SoundFile(path) as audio:  # one open: the header decides how much to decode
                n = resampled_length(audio.frames, audio.samplerate, self.sample_rate)
                if self._cached_bytes + 4 * n <= self.cache_bytes:
                    wav = decoded(audio.read(dtype="float32", always_2d=True), audio.samplerate, self.sample_rate)
                    self._cache[path] = wav
                    self._cached_bytes += wav.numel() * wav.element_size()
                    return self.crop(wav, rng)
                # Long files (a 10 s recording for a 1 s crop): decode only the crop's neighbourhood. Decoding and
                # resampling the whole file would cost several times the rest of the pipeline per item.
                if n >= 2 * self.clip_samples:
                    start = self._crop_start(n, rng)
                    clip = read_window(audio, start, self.clip_samples, self.sample_rate)
                    if clip is not None:
                        return clip, self.clip_samples
                else:
                    start = None
                audio.seek(0)
                wav = decoded(audio.read(dtype="float32", always_2d=True), audio.samplerate, self.sample_rate)
            return self.crop(wav, rng) if start is None else self._crop(wav, start)
        except _READ_ERRORS as err:
            reason = f"{type(err).__name__}: {err}"
        self.failures[path] = reason
        logger.warning("skipping unreadable audio file %s (%s)", path, reason)
        return None

    def _crop_start(self, n: int, rng: np.random.Generator) -> int:
        """Offset of the crop in a waveform of ``n`` samples (0 for files no longer than a clip)."""
        if n >= self.clip_samples and self.random_crop:
            return int(rng.integers(0, n - self.clip_samples + 1))
        return 0

    def crop(self, wav: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """Crop (or zero-pad) a decoded 16 kHz waveform ``(T,)`` to ``(clip_samples,)`` as :meth:`read_clip` does,
        drawing the offset from ``rng`` the same way; returns the clip and its real length."""
        return self._crop(wav, self._crop_start(wav.shape[0], rng))

    def _crop(self, wav: torch.Tensor, start: int) -> tuple[torch.Tensor, int]:
        if wav.shape[0] >= self.clip_samples:
            start = min(start, wav.shape[0] - self.clip_samples)  # a header can overstate the length
            return wav[start:start + self.clip_samples].clone(), self.clip_samples
        return pad_clip(wav, self.clip_samples)


def exclude_files(files: Sequence[str], base: str | os.PathLike, patterns: Sequence[str]) -> list[str]:
    """``files`` without those matching any of ``patterns``, which are relative to ``base``.

    A pattern is a folder (``esc10`` leaves out everything under ``base/esc10/``) or an ``fnmatch`` glob on the
    path relative to ``base`` (``fsdd/recordings/*_jackson_*``). A pattern that matches no file is an error,
    so that a typo cannot silently keep a corpus that an evaluation believes was held out.

    Raises:
        ConfigError: an empty pattern, or one that matches nothing.
    """
    rel = [os.path.relpath(f, base).replace(os.sep, "/") for f in files]
    keep = np.ones(len(files), dtype=bool)
    for pattern in patterns:
        p = str(pattern).strip().strip("/")
        if not p:
            raise ConfigError("data.exclude holds an empty pattern")
        hit = np.array([r.startswith(p + "/") or fnmatch.fnmatchcase(r, p) for r in rel], dtype=bool)
        if not hit.any():
            raise ConfigError(f"data.exclude pattern {pattern!r} matches no file under {base}")
        keep &= ~hit
    return [f for f, k in zip(files, keep) if k]


def crops_per_file(path: str, clip_seconds: float) -> int:
    """``round(duration / clip_seconds)`` from the file header, at least 1 (and 1 when the header is unreadable,
    so the file still gets its one chance to be read, and skipped, like any other). Rounding, not ceil: a 5 s
    recording whose header says 5.02 s is 5 clips of 1 s, not 6."""
    try:
        info = sf.info(path)
    except _READ_ERRORS:
        return 1
    if info.samplerate <= 0 or info.frames <= 0:
        return 1
    return max(1, round(info.frames / info.samplerate / clip_seconds))


def pad_clip(wav: torch.Tensor, clip_samples: int) -> tuple[torch.Tensor, int]:
    """Zero-pad a waveform ``(n,)`` with ``n <= clip_samples`` at the end; returns it and ``n`` (the real samples)."""
    n = int(wav.shape[0])
    return torch.nn.functional.pad(wav, (0, clip_samples - n)), n


def apply_gain(clip: torch.Tensor, gain_db: tuple[float, float] | None, rng: np.random.Generator) -> torch.Tensor:
    """Scale ``clip`` by a gain drawn uniformly in dB from ``gain_db`` (None: unchanged), capped so the peak
    stays <= 1: gain jitter must never clip a loud recording."""
    if gain_db is None:
        return clip
    gain = 10.0 ** (rng.uniform(*gain_db) / 20.0)
    peak = float(clip.abs().max())
    if peak * gain > 1.0:
        gain = 1.0 / peak
    return clip * gain


def collate_clips(samples: list[dict]) -> dict:
    """Batch sample dicts (the one collate function; training adds masks, :class:`ajepa.data.RankMaskCollate`).

    Returns ``{"wav": (B, N) float32, "lengths": (B,) int64, "batch_index": int, "paths": list[str | None],
    "skipped": list[str]}`` plus ``"labels": (B,) int64`` when the samples carry ``"label"``. ``skipped``: files
    a worker's dataset skipped while filling this batch; the trainer reports them at the end. A sample of several
    crops (``wav (K, N)``, ``length`` a list) gives K consecutive rows with its path repeated.

    Raises:
        ValueError: an empty batch, or samples that disagree on ``batch_index`` (the sampler yields one per batch).
        AudioInputError: waveforms that are not 1-D or not of one length.
    """
    if not samples:
        raise ValueError("collate_clips got an empty batch")
    batch_index = int(samples[0]["batch_index"])
    for i, s in enumerate(samples):
        if int(s["batch_index"]) != batch_index:
            raise ValueError(f"samples of one batch disagree on batch_index: sample 0 has {batch_index}, "
                             f"sample {i} has {s['batch_index']}; the sampler must yield one batch_index per batch")
    wavs = [torch.as_tensor(s["wav"], dtype=torch.float32) for s in samples]
    for i, wav in enumerate(wavs):
        if wav.ndim not in (1, 2) or wav.shape != wavs[0].shape:
            raise AudioInputError(f"samples of batch {batch_index} must be waveforms of one shape, (N,) or "
                                  f"(crops, N): sample 0 has shape {tuple(wavs[0].shape)}, sample {i} has "
                                  f"{tuple(wav.shape)}")
    crops = 1 if wavs[0].ndim == 1 else wavs[0].shape[0]
    lengths = [n for s in samples for n in (s["length"] if crops > 1 else [s["length"]])]
    batch = {
        "wav": torch.stack(wavs) if crops == 1 else torch.cat(wavs),
        "lengths": torch.tensor([int(n) for n in lengths], dtype=torch.int64),
        "batch_index": batch_index,
        "paths": [s.get("path") for s in samples for _ in range(crops)],
        "skipped": [p for s in samples for p in s.get("skipped", [])],
    }
    if all("label" in s for s in samples):
        batch["labels"] = torch.tensor([s["label"] for s in samples], dtype=torch.int64)
    return batch


def single_thread_worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one intra-op torch thread per worker."""
    # The machine has few cores: workers doing BLAS-threaded decoding/resampling would starve the main
    # process (which runs the model), so each worker gets a single intra-op thread.
    torch.set_num_threads(1)


def make_loader(
    dataset: Dataset,
    sampler: Sampler,
    collate_fn: Callable[[list[dict]], dict] | None,
    num_workers: int,
    *,
    pin_memory: bool | None = None,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A DataLoader driven by a batch sampler such as :class:`ajepa.data.sampler.BatchIndexSampler`.

    Workers persist across epochs (the sampler is infinite anyway, and re-forking costs seconds) and run
    single-threaded. ``pin_memory`` defaults to whether CUDA is available, since pinning only helps
    host-to-GPU copies. ``collate_fn=None`` means :func:`collate_clips`.
    """
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    worker_kwargs = {}
    if num_workers > 0:
        worker_kwargs = {"persistent_workers": True, "prefetch_factor": prefetch_factor,
                         "worker_init_fn": single_thread_worker_init}
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn or collate_clips,
                      num_workers=num_workers, pin_memory=pin_memory, **worker_kwargs)
