"""Size and fidelity of the compact export formats: float32, float16 and int8 weights of one model.

Each format is written to a temporary folder and loaded back; the table gives the file size and how closely its
clip embeddings (the model's recommended read-out) match those of the model as given, on real clips drawn at
random (fixed seed) from each data folder:

    .venv/bin/python bench/export_size.py --model runs/default_model/checkpoints/last.pt \\
        --data ../shared/data/esc10 ../shared/data/fsdd ../shared/data/speech_commands_v2_test_dev

``--model`` is a training checkpoint or an export; the reference is computed in float32 from its weights as stored.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np

from ajepa.features import list_audio_files
from ajepa.inference import load
from ajepa.inference.model_files import WEIGHTS_DTYPES


def _clips(folders: list[str], per_folder: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    clips = []
    for folder in folders:
        files = sorted(list_audio_files(folder))
        clips += rng.sample(files, min(per_folder, len(files)))
    return clips


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> None:
    """Print one row per storage format: bytes, and the min / mean cosine to the reference embeddings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="training checkpoint or exported model")
    parser.add_argument("--data", nargs="+", required=True, help="folders of audio files (searched recursively)")
    parser.add_argument("--clips-per-folder", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    reference = load(args.model, device="cpu")
    clips = _clips(args.data, args.clips_per_folder, args.seed)
    ref = reference.embed(clips)
    print(f"{len(clips)} clips; read-out {reference.pooling}, average_layers={reference.average_layers}")
    print(f"{'weights':<8} {'bytes':>10} {'min cos':>10} {'mean cos':>10} {'max rel L2':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in WEIGHTS_DTYPES:
            path = reference.save(Path(tmp) / dtype, weights_dtype=dtype)
            got = load(path.parent, device="cpu").embed(clips)
            cos = _cosine(ref, got)
            rel = np.linalg.norm(ref - got, axis=1) / np.linalg.norm(ref, axis=1)
            print(f"{dtype:<8} {path.stat().st_size:>10,} {cos.min():>10.7f} {cos.mean():>10.7f} {rel.max():>10.5f}")


if __name__ == "__main__":
    main()
