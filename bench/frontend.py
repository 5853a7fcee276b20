"""Front-end throughput: batched LogMelFrontend vs per-clip librosa and torchaudio Kaldi fbank.

    .venv/bin/python bench/frontend.py [--threads 2] [--batch 32] [--seconds 10] [--repeats 5]

Times one batch of random 16 kHz clips per repeat, after a warm-up, and prints a Markdown table with
the ratio to librosa. The methods are interleaved (each repeat runs every method once, in a rotated
order) so that a change in machine load hits all of them alike; the table gives the median and the
minimum wall time, and the minimum process CPU time (all threads), which is the least sensitive to
other jobs on a shared machine. Thread pools of torch and of numpy's BLAS are both limited to
``--threads`` so that the comparison is fair.

The librosa baseline computes the same spectrogram resolution: ``melspectrogram(n_fft=512,
win_length=400, hop_length=160, window='hann', power=2.0, n_mels=128)`` with librosa's defaults
otherwise (``center=True``, Slaney mel scale), then ``log(x + 1e-10)``, one clip at a time.
"""

from __future__ import annotations

import argparse
import os
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

LIBROSA = "librosa melspectrogram + log (per clip)"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _time_interleaved(
    methods: dict[str, Callable[[], object]], warmup: int, repeats: int
) -> dict[str, tuple[list[float], list[float]]]:
    """``{name: (wall seconds, process CPU seconds)}`` per repeat, the methods run in rotated order."""
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in methods}
    names = list(methods)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = time.perf_counter(), time.process_time()
            methods[name]()
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return times


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
                    y=clip, sr=sr, n_fft=512, win_length=400, hop_length=160, window="hann", n_mels=128,
                    power=2.0,
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
        LIBROSA: librosa_per_clip,
        "torchaudio kaldi.fbank (per clip)": kaldi_per_clip,
    }
    load_before = os.getloadavg()[0]
    with threadpool_limits(limits=args.threads):
        times = _time_interleaved(methods, args.warmup, args.repeats)
    load_after = os.getloadavg()[0]

    librosa_wall, librosa_cpu = statistics.median(times[LIBROSA][0]), min(times[LIBROSA][1])
    print(
        f"{args.batch} clips of {args.seconds:g} s at 16 kHz per batch; {args.repeats} interleaved repeats "
        f"after {args.warmup} warm-up.\n"
        f"Machine: {_cpu_model()}, {os.cpu_count()} CPUs, {args.threads} threads; load average "
        f"{load_before:.1f} -> {load_after:.1f}; torch {torch.__version__}, librosa {librosa.__version__}.\n"
        "librosa: n_fft=512, win_length=400, hop_length=160, window='hann', power=2, n_mels=128, "
        "center=True, log(x + 1e-10).\n"
    )
    print("| method | ms / batch (median) | ms (min) | clips/s | vs librosa | CPU ms (min) | vs librosa, CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (wall, cpu) in times.items():
        median, cpu_min = statistics.median(wall), min(cpu)
        print(
            f"| {name} | {median * 1000:.0f} | {min(wall) * 1000:.0f} | {args.batch / median:.0f} | "
            f"{librosa_wall / median:.2f}x | {cpu_min * 1000:.0f} | {librosa_cpu / cpu_min:.2f}x |"
        )


if __name__ == "__main__":
    main()
