"""Training-clip loading: decode only the crop (``AudioClipDataset``) vs decode the whole file, then crop.

    .venv/bin/python bench/data_loading.py [--root ../shared/data/esc10] [--clip-seconds 1] [--files 100] [--repeats 3]

For each of ``--files`` audio files (sorted, the first N under ``--root``) both methods produce the same
``--clip-seconds`` crop at the same random offset, resampled to 16 kHz, on one thread: what one DataLoader worker
does per item. The methods are interleaved per repeat so that machine load hits both alike; the table gives the
median and minimum time per item over the repeats and the ratio. The longer the files are relative to the crop,
the larger the gain (ESC-10: 5 s Ogg Vorbis at 44.1 kHz, 1 s crops).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from ajepa.data.dataset import AudioClipDataset
from ajepa.features.audio import list_audio_files, load_audio


def _full_decode(ds: AudioClipDataset, path: str, rng: np.random.Generator) -> torch.Tensor:
    wav = load_audio(path, target_sr=ds.sample_rate)
    clip, _ = ds.crop(wav, rng)
    return clip


def _window_decode(ds: AudioClipDataset, path: str, rng: np.random.Generator) -> torch.Tensor:
    clip, _ = ds.read_clip(path, rng)
    return clip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data/esc10")
    p.add_argument("--clip-seconds", type=float, default=1.0)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    files = list_audio_files(args.root)[: args.files]
    ds = AudioClipDataset(files, args.clip_seconds, gain_db=None)
    methods = {"whole file, then crop": _full_decode, "crop only (AudioClipDataset)": _window_decode}
    for path in files[:3]:  # warm-up (resampling kernels), and the two must agree
        a, b = (m(ds, path, np.random.default_rng(0)) for m in methods.values())
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(args.repeats):
        order = list(methods.items())[r % 2:] + list(methods.items())[: r % 2]
        for name, method in order:
            start = time.perf_counter()
            for i, path in enumerate(files):
                method(ds, path, np.random.default_rng(i))
            times[name].append((time.perf_counter() - start) / len(files) * 1000)
    base = statistics.median(times["whole file, then crop"])
    print(f"{len(files)} files under {args.root}, {args.clip_seconds} s crops, 1 thread, "
          f"{args.repeats} repeats, {platform.processor() or platform.machine()}")
    print("| method | ms per item (median) | min | speed-up |\n|---|---:|---:|---:|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} | {min(values):.2f} | {base / med:.1f}x |")


if __name__ == "__main__":
    main()
