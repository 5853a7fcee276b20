"""Peak memory of ``python -m ajepa embed`` on a 30-second and a 30-minute recording (44.1 kHz stereo), measured
with ``/usr/bin/time -v`` (maximum resident set size) in separate processes, side by side in one run.

    .venv/bin/python bench/long_file_memory.py                 # writes the two files to a temporary folder
    .venv/bin/python bench/long_file_memory.py --minutes 30 --keep /tmp/long_audio

Files over two minutes are read window by window (``ajepa.inference.inputs.StreamedAudio``), so the peak should
not grow with the duration beyond the per-column features the read-out keeps (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf


def write_recording(path: Path, seconds: float, sr: int = 44100) -> Path:
    """A stereo PCM-16 WAV of quiet noise with a tone, written in blocks (never held whole)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=sr, channels=2, subtype="PCM_16") as f:
        block = 60 * sr
        for start in range(0, int(seconds * sr), block):
            n = min(block, int(seconds * sr) - start)
            t = (start + np.arange(n)) / sr
            mono = 0.05 * rng.standard_normal(n) + 0.1 * np.sin(2 * np.pi * 440 * t)
            f.write(np.stack([mono, mono * 0.5], axis=1).astype(np.float32))
    return path


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """Maximum resident set size (MB) and wall seconds of a command under ``/usr/bin/time -v``."""
    proc = subprocess.run(["/usr/bin/time", "-v", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr).group(1)
    parts = [float(x) for x in wall.split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return rss / 1024, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--keep", type=Path, default=None, help="write the recordings here and keep them")
    args = p.parse_args()
    from train_step import machine  # bench/ is the script's directory

    folder = args.keep or Path(tempfile.mkdtemp(prefix="ajepa_long_"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, seconds in (("30 s", 30.0), (f"{args.minutes:g} min", 60.0 * args.minutes)):
        audio = folder / f"{int(seconds)}s.wav"
        if not audio.exists():
            write_recording(audio, seconds)
        cmd = [sys.executable, "-m", "ajepa", "embed", str(audio), "--out", str(folder / f"{int(seconds)}s.npz"),
               "--no-progress", "--frames"]
        rss, wall = peak_rss_mb(cmd)
        rows.append((label, audio.stat().st_size / 2**20, rss, wall))
    print(f"Machine: {machine()}. `python -m ajepa embed FILE --frames` with the default model, 44.1 kHz stereo "
          "PCM-16 WAV.\n")
    print("| recording | file MB | peak RSS MB | wall s |")
    print("|---|---:|---:|---:|")
    for label, size, rss, wall in rows:
        print(f"| {label} | {size:.0f} | {rss:.0f} | {wall:.0f} |")
    print(f"\nDifference: {rows[1][2] - rows[0][2]:.0f} MB.")


if __name__ == "__main__":
    main()
