"""The audio front end: files/arrays -> mono 16 kHz waveforms -> Kaldi log-mel -> patch tokens."""

from ajepa.features.audio import AUDIO_EXTENSIONS, list_audio_files, load_audio, resample
from ajepa.features.logmel import FrontendConfig, LogMelFrontend
from ajepa.features.patches import grid_shape, patchify, valid_tokens
from ajepa.features.tokenizer import AudioTokenizer, TokenizedAudio

_STATS_NAMES = ("LogMelStats", "logmel_stats")


def __getattr__(name: str):
    # Lazy so that `python -m ajepa.features.stats` does not find the module already imported.
    if name in _STATS_NAMES:
        from ajepa.features import stats

        return getattr(stats, name)
    raise AttributeError(f"module 'ajepa.features' has no attribute {name!r}")


__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioTokenizer",
    "FrontendConfig",
    "LogMelFrontend",
    "LogMelStats",
    "TokenizedAudio",
    "grid_shape",
    "list_audio_files",
    "load_audio",
    "logmel_stats",
    "patchify",
    "resample",
    "valid_tokens",
]
