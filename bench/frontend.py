"""Front-end throughput: batched LogMelFrontend vs per-clip librosa and torchaudio Kaldi fbank.

    .venv/bin/python bench/frontend.py [--threads 2] [--batch 32] [--seconds 10] [--repeats 5]

Times one batch of random 16 kHz clips per repeat (after a warm-up), reports the median as clips/s and
prints a Markdown table with the ratio to librosa. Thread pools of torch and of numpy's BLAS are both
limited to ``--threads`` so that the comparison is fair.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import librosa
import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torchaudio.compliance import kaldi

from ajepa.features import LogMelFrontend


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _median_seconds(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    sr = 16000
    rng = np.random.default_rng(0)
    clips = (0.1 * rng.standard_normal((args.batch, int(args.seconds * sr)))).astype(np.float32)
    wav = torch.from_numpy(clips)
    frontend = LogMelFrontend(normalize=False)

    def ours() -> object:
        with torch.inference_mode():
            return frontend(wav)

    def librosa_per_clip() -> object:
        # n_fft 512 with a 400-sample window: the same resolution as the Kaldi front end.
        return [
            np.log(
                librosa.feature.melspectrogram(
                    y=clip, sr=sr, n_fft=512, win_length=400, hop_length=160, n_mels=128, power=2.0
                )
                + 1e-10
            )
            for clip in clips
        ]

    def kaldi_per_clip() -> object:
        with torch.inference_mode():
            return [
                kaldi.fbank(
                    clip.unsqueeze(0), htk_compat=True, sample_frequency=sr, use_energy=False,
                    window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10, frame_length=25,
                )
                for clip in wav
            ]

    methods = {
        "ajepa LogMelFrontend (batched)": ours,
        "librosa melspectrogram + log (per clip)": librosa_per_clip,
        "torchaudio kaldi.fbank (per clip)": kaldi_per_clip,
    }
    with threadpool_limits(limits=args.threads):
        seconds = {name: _median_seconds(fn, args.warmup, args.repeats) for name, fn in methods.items()}

    librosa_rate = args.batch / seconds["librosa melspectrogram + log (per clip)"]
    print(
        f"{args.batch} clips of {args.seconds:g} s at 16 kHz per batch; median of {args.repeats} repeats "
        f"after {args.warmup} warm-up.\n"
        f"Machine: {_cpu_model()}, {args.threads} threads; torch {torch.__version__}, librosa {librosa.__version__}.\n"
    )
    print("| method | ms / batch | clips/s | vs librosa |")
    print("|---|---:|---:|---:|")
    for name, secs in seconds.items():
        rate = args.batch / secs
        print(f"| {name} | {secs * 1000:.0f} | {rate:.0f} | {rate / librosa_rate:.2f}x |")


if __name__ == "__main__":
    main()
