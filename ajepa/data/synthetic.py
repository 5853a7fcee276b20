"""The embedded default corpus: labelled synthetic sound scenes generated on the fly, no files needed.

Each clip holds one to three events of a single sound class over coloured background noise. The classes are
chosen to occupy different regions and shapes of the time-frequency plane (dense harmonic combs with formant
envelopes, sweeping lines, noise bands, vertical click lines, pulsing lines, steady line pairs), so an
encoder that learns anything about spectro-temporal structure separates them. Every random choice comes
from the ``numpy.random.Generator`` passed in, which makes a clip a pure function of its seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ajepa.errors import ConfigError
from ajepa.extras import require

signal = require("scipy.signal", "train", "scipy")  # filters of the synthetic scenes

CLASS_NAMES: tuple[str, ...] = ("harmonic", "chirp", "noise_burst", "click_train", "am_tone", "chord")
NUM_CLASSES: int = len(CLASS_NAMES)

_TWO_PI = 2.0 * np.pi


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    # Pitch and bandwidth are perceived on a log scale, so sample them that way.
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _phase(freq: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Instantaneous phase of a tone whose frequency varies sample by sample."""
    return rng.uniform(0.0, _TWO_PI) + _TWO_PI * np.cumsum(freq) / sample_rate


def _harmonic(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Source-filter voice: a vibrato sawtooth through a cascade of 2-3 formant resonators."""
    t = np.arange(n) / sr
    f0 = rng.uniform(90.0, 320.0)
    depth, rate = rng.uniform(0.005, 0.03), rng.uniform(4.0, 7.0)
    vibrato = 1.0 + depth * np.sin(_TWO_PI * rate * t + rng.uniform(0, _TWO_PI))
    cycles = _phase(f0 * vibrato, sr, rng) / _TWO_PI
    source = 2.0 * (cycles - np.floor(cycles)) - 1.0
    formants = [rng.uniform(300.0, 900.0), rng.uniform(900.0, 2500.0), rng.uniform(2400.0, 3600.0)]
    denominator = np.ones(1)
    for freq in formants[: rng.integers(2, 4)]:
        radius = np.exp(-np.pi * rng.uniform(60.0, 200.0) / sr)
        denominator = np.convolve(denominator, [1.0, -2.0 * radius * np.cos(_TWO_PI * freq / sr), radius**2])
    return signal.lfilter([1.0], denominator, source)


def _chirp(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A pure tone sweeping at least an octave, linearly or exponentially in frequency."""
    f_start = _log_uniform(rng, 150.0, 6000.0)
    octaves = rng.uniform(1.0, 3.0) * rng.choice([-1.0, 1.0])
    f_end = float(np.clip(f_start * 2.0**octaves, 100.0, 0.45 * sr))
    frac = np.linspace(0.0, 1.0, n)
    if rng.random() < 0.5:
        freq = f_start + (f_end - f_start) * frac
    else:
        freq = f_start * (f_end / f_start) ** frac
    return np.sin(_phase(freq, sr, rng))


def _noise_burst(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """White noise band-passed to a third of an octave up to two octaves."""
    centre = _log_uniform(rng, 300.0, 5000.0)
    half_width = 2.0 ** (rng.uniform(1.0 / 3.0, 2.0) / 2.0)
    low, high = centre / half_width, min(centre * half_width, 0.45 * sr)
    sos = signal.butter(4, [low, high], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n))


def _click_train(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Short broadband clicks whose rate glides between two values in 4-60 Hz."""
    rates = np.linspace(rng.uniform(4.0, 60.0), rng.uniform(4.0, 60.0), n)
    cycles = rng.uniform(0.0, 1.0) + np.cumsum(rates) / sr
    onsets = np.flatnonzero(np.diff(np.floor(cycles), prepend=np.floor(cycles[0])) > 0)
    impulses = np.zeros(n)
    impulses[onsets] = rng.choice([-1.0, 1.0], size=onsets.size) * rng.uniform(0.6, 1.0, size=onsets.size)
    click_len = max(2, int(0.003 * sr))
    kernel = rng.standard_normal(click_len) * np.exp(-np.arange(click_len) / (0.2 * click_len))
    return np.convolve(impulses, kernel)[:n]


def _am_tone(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A steady pure tone whose amplitude pulses at 3-15 Hz."""
    t = np.arange(n) / sr
    carrier = np.sin(_phase(np.full(n, _log_uniform(rng, 200.0, 4000.0)), sr, rng))
    depth = rng.uniform(0.7, 1.0)
    envelope = 1.0 - depth * (0.5 + 0.5 * np.cos(_TWO_PI * rng.uniform(3.0, 15.0) * t + rng.uniform(0, _TWO_PI)))
    return envelope * carrier


_INTERVALS = np.array([6 / 5, 5 / 4, 4 / 3, 3 / 2, 5 / 3])


def _chord(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Two or three steady pure tones a consonant interval apart."""
    root = _log_uniform(rng, 150.0, 1500.0)
    freqs = [root, root * rng.choice(_INTERVALS)]
    if rng.random() < 0.5:
        freqs.append(freqs[-1] * rng.choice(_INTERVALS))
    return sum(rng.uniform(0.5, 1.0) * np.sin(_phase(np.full(n, f), sr, rng)) for f in freqs)


_GENERATORS: tuple[Callable[[np.random.Generator, int, int], np.ndarray], ...] = (
    _harmonic, _chirp, _noise_burst, _click_train, _am_tone, _chord,
)


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """White to brownish noise: a one-pole low-pass of random strength."""
    pole = rng.uniform(0.0, 0.95)
    return signal.lfilter([1.0 - pole], [1.0, -pole], rng.standard_normal(n))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) + 1e-12


def synthesize_clip(
    rng: np.random.Generator, seconds: float, sample_rate: int = 16000, *, class_id: int | None = None
) -> tuple[np.ndarray, int]:
    """Generate one labelled clip.

    Args:
        rng: the only source of randomness; the same generator state gives the same clip.
        seconds: clip duration.
        sample_rate: samples per second.
        class_id: force a class (0..NUM_CLASSES-1); drawn from ``rng`` when None.

    Returns:
        ``(wav, class_id)``: float32 ``(round(seconds * sample_rate),)`` with peak below 1, and the class.
    """
    n = int(round(seconds * sample_rate))
    if n < 1 or sample_rate < 1000:
        raise ConfigError(f"synthesize_clip needs seconds * sample_rate >= 1 and sample_rate >= 1000, "
                          f"got seconds={seconds}, sample_rate={sample_rate}")
    if class_id is None:
        class_id = int(rng.integers(NUM_CLASSES))
    elif not 0 <= class_id < NUM_CLASSES:
        raise ConfigError(f"class_id must be in 0..{NUM_CLASSES - 1}, got {class_id}")

    events = np.zeros(n)
    for _ in range(rng.integers(1, 4)):
        length = max(1, min(n, int(rng.uniform(0.25, 0.9) * sample_rate)))
        start = int(rng.integers(0, n - length + 1))
        event = _GENERATORS[class_id](rng, length, sample_rate)
        # Raised-cosine fades so event edges do not add broadband clicks to every class.
        fade = min(length // 2, int(rng.uniform(0.005, 0.03) * sample_rate))
        if fade > 0:
            ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
            event[:fade] *= ramp
            event[length - fade:] *= ramp[::-1]
        events[start:start + length] += rng.uniform(0.5, 1.0) * event / _rms(event)

    snr_db = rng.uniform(3.0, 30.0)
    noise = _background(rng, n)
    mix = events + noise * (_rms(events) / _rms(noise)) * 10.0 ** (-snr_db / 20.0)
    mix *= rng.uniform(0.3, 0.95) / (np.max(np.abs(mix)) + 1e-12)
    return mix.astype(np.float32), class_id


class SyntheticAudioDataset(torch.utils.data.Dataset):
    """A fixed-size, deterministic synthetic corpus: item ``i`` is a pure function of ``(seed, i)``.

    Classes cycle with the index (``i % NUM_CLASSES``) so every prefix of the corpus is balanced.
    Items have the :class:`~ajepa.data.dataset.AudioClipDataset` sample format plus ``"label"``.
    """

    def __init__(self, length: int, clip_seconds: float, seed: int, sample_rate: int = 16000) -> None:
        if length < 1:
            raise ConfigError(f"SyntheticAudioDataset length must be >= 1, got {length}")
        if clip_seconds <= 0:
            raise ConfigError(f"clip_seconds must be > 0, got {clip_seconds}")
        self.length = length
        self.clip_seconds = clip_seconds
        self.seed = seed
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """``key`` is an index or an ``(index, batch_index)`` pair; the clip depends on the index only."""
        index, batch_index = (key, 0) if isinstance(key, (int, np.integer)) else key
        index = int(index)
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for SyntheticAudioDataset of length {self.length}")
        wav, label = synthesize_clip(np.random.default_rng((self.seed, index)), self.clip_seconds,
                                     self.sample_rate, class_id=index % NUM_CLASSES)
        return {
            "wav": torch.from_numpy(wav),
            "length": int(wav.shape[0]),
            "batch_index": int(batch_index),
            "path": f"synthetic://{self.seed}/{index}",
            "label": label,
            "skipped": [],
        }
