"""X-ARES's own ESC-50 pipeline, offline, on ESC-50 data read from its official layout (``pip install 'ajepa[xares]'``).

    python -m ajepa.evals.xares_esc50 --data ../shared/data/esc50_dev --env-root runs/xares --model default
    python -m ajepa.evals.xares_esc50 --data ../shared/data/esc50_dev --env-root runs/xares --model logmel

The folds present are packed into X-ARES's webdataset layout (``<env-root>/esc50/wds-audio-fold-<k>-000000.tar``:
``<key>.<ext>`` audio and ``<key>.json`` ``{"label": <class id>}``, as its Zenodo release holds them) and marked
ready, so X-ARES downloads nothing; then X-ARES's ``esc50_config`` task runs with the folds present: it encodes
the audio with the encoder, trains its MLP (LayerNorm + linear on the frames' mean) per held-out fold and its kNN,
and reports their accuracies. ``--model logmel`` is a log-mel statistics encoder of the same front end. Writes
``<env-root>/esc50_<model>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from ajepa.errors import AudioInputError
from ajepa.evals.datasets import read_esc50
from ajepa.extras import require
from ajepa.features.logmel import FrontendConfig, LogMelFrontend
from ajepa.io import atomic_write

__all__ = ["LogmelStatsEncoder", "pack_esc50", "main"]


class LogmelStatsEncoder(nn.Module):
    """Log-mel frames and their squares ``(B, T', 2 * n_mels)`` every 10 ms: X-ARES's mean over time makes them the
    mean and second moment of each band, log-mel statistics as ajepa's ``logmel`` baseline uses them."""

    def __init__(self, frontend: FrontendConfig = FrontendConfig()) -> None:
        super().__init__()
        self.frontend = LogMelFrontend(frontend)
        self.sampling_rate = frontend.sample_rate
        self.hop_size_in_ms = frontend.hop_ms
        self.output_dim = 2 * frontend.n_mels

    def forward(self, audio: Tensor) -> Tensor:
        if not isinstance(audio, Tensor) or audio.ndim != 2:
            raise AudioInputError(f"X-ARES audio must be a tensor (B, T), got {getattr(audio, 'shape', type(audio))}")
        mel = self.frontend(audio.float()).transpose(1, 2)  # (B, T', F)
        return torch.cat([mel, mel.square()], dim=-1)


def pack_esc50(data: str | Path, env_root: str | Path, settings) -> list[int]:
    """Write the ESC-50 folds under ``data`` in X-ARES's layout under ``<env_root>/esc50`` (atomically, once) and
    mark them ready; returns the folds."""
    clips = read_esc50(data)
    task_dir = Path(env_root) / "esc50"
    folds = sorted(int(f) for f in set(clips.folds.tolist()))
    for fold in folds:
        tar_path = task_dir / f"wds-audio-fold-{fold}-000000.tar"
        if tar_path.is_file():
            continue
        members = [(p, int(label)) for p, label, f in zip(clips.paths, clips.labels, clips.folds) if int(f) == fold]

        def write(tmp: Path, members=members) -> None:
            with tarfile.open(tmp, "w") as tar:
                for path, label in members:
                    key = Path(path).stem
                    for name, payload in ((f"{key}{Path(path).suffix.lower()}", Path(path).read_bytes()),
                                          (f"{key}.json", json.dumps({"label": label}).encode())):
                        info = tarfile.TarInfo(name)
                        info.size = len(payload)
                        tar.addfile(info, io.BytesIO(payload))

        atomic_write(tar_path, write)
    (task_dir / settings.audio_ready_filename).touch()
    return folds


@contextlib.contextmanager
def _decoding_with_soundfile() -> Iterator[None]:
    """X-ARES's loader (webdataset's ``torch_audio`` decoder) calls ``torchaudio.load(path)``, which from torchaudio
    2.9 needs torchcodec (and FFmpeg). Where torchcodec is missing, it gets the soundfile decoder ajepa reads audio
    with (the same samples) for the duration of the block; ``torchaudio.load`` is restored after it."""
    import torchaudio

    try:
        import torchcodec  # noqa: F401
    except ImportError:
        pass
    else:
        yield
        return
    import soundfile as sf

    def load(path: str, *args: object, **kwargs: object) -> tuple[Tensor, int]:
        if args or kwargs:  # options the stand-in does not implement must not be silently dropped
            raise TypeError(f"ajepa's soundfile stand-in for torchaudio.load takes a path only, got {args} {kwargs}")
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        return torch.from_numpy(data.T.copy()), sr

    original = torchaudio.load
    torchaudio.load = load
    try:
        yield
    finally:
        torchaudio.load = original


def main(argv: list[str] | None = None) -> int:
    """Pack the folds, run X-ARES's ESC-50 task with the encoder, print and write the MLP and kNN accuracies."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.xares_esc50", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="ESC-50 in its official layout (audio/, meta/esc50.csv)")
    p.add_argument("--env-root", required=True, help="X-ARES's working folder (packed audio, embeddings, scores)")
    p.add_argument("--model", default="default", help="'default', 'logmel', or an export/checkpoint path")
    args = p.parse_args(argv)
    require("xares.task", "xares", "xares")
    from tasks.esc50_task import esc50_config  # X-ARES's own task definition (its wheel's top-level `tasks`)
    from xares.common import XaresSettings
    from xares.task import XaresTask

    from ajepa.xares import AjepaEncoder

    folds = pack_esc50(args.data, args.env_root, XaresSettings())
    encoder = LogmelStatsEncoder() if args.model == "logmel" else AjepaEncoder(
        None if args.model == "default" else args.model)
    config = esc50_config(encoder)
    config.env_root = args.env_root
    config.k_fold_splits = folds
    config.update_tar_name_of_split()
    config.torch_num_threads = torch.get_num_threads()
    with _decoding_with_soundfile():
        (mlp, _), (knn, _) = XaresTask(config).run()
    result = {"model": args.model, "encoder": type(encoder).__name__, "folds": folds, "mlp_accuracy": float(mlp),
              "knn_accuracy": float(knn)}
    print(json.dumps(result))
    out = Path(args.env_root) / f"esc50_{Path(args.model).name}.json"
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
