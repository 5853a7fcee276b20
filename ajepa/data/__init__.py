"""Training data: the embedded synthetic corpus, audio-file clip datasets and the resumable batch sampler."""

from ajepa.data.dataset import AudioClipDataset, collate_clips, make_loader
from ajepa.data.sampler import BatchIndexSampler
from ajepa.data.synthetic import (
    CLASS_NAMES,
    NUM_CLASSES,
    SyntheticAudioDataset,
    synthesize_clip,
)

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "AudioClipDataset",
    "BatchIndexSampler",
    "SyntheticAudioDataset",
    "collate_clips",
    "make_loader",
    "synthesize_clip",
]
