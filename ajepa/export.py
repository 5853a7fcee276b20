"""Export one encoder of a training checkpoint as pickle-free safetensors + JSON, and read both formats back.

Command line::

    python -m ajepa.export outputs/<run>/checkpoints/last.pt --out my_model/ [--encoder target|context]

writes ``my_model/model.safetensors`` (the encoder's state_dict, keys as in ``ViTEncoder``) and
``my_model/config.json`` (format, version, front-end settings with normalisation statistics, encoder config,
sample rate, clip seconds, which encoder). ``--out name.safetensors`` writes ``name.safetensors`` + ``name.json``.
Load the result with ``ajepa.load("my_model/")``. The target (EMA) encoder is the default: it is the smoother,
better-evaluating representation of I-JEPA-style training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ajepa.checkpoint import load_checkpoint
from ajepa.io import atomic_write
from ajepa.errors import CheckpointError, ConfigError
from ajepa.features.logmel import FrontendConfig
from ajepa.models.sizes import EncoderConfig

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "export_checkpoint", "read_export", "read_training_checkpoint",
           "write_export", "main"]

EXPORT_FORMAT = "ajepa-encoder"
EXPORT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def export_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, config)`` paths for an export target: a folder, or ``<name>.safetensors`` / ``<name>.json``."""
    out = Path(out).expanduser()
    if out.suffix.lower() in (".safetensors", ".json"):
        return out.with_suffix(".safetensors"), out.with_suffix(".json")
    return out / WEIGHTS_NAME, out / CONFIG_NAME


def write_export(state: dict[str, Tensor], config: dict[str, Any], out: str | os.PathLike) -> Path:
    """Write ``state`` as safetensors and ``config`` as JSON (each atomically); return the weights path."""
    from safetensors.torch import save_file

    weights, cfg_path = export_paths(out)
    weights.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses views that share storage; owned contiguous CPU copies are always accepted.
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in state.items()}
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata={"format": EXPORT_FORMAT}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write(cfg_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return weights


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, encoder: str = "target") -> Path:
    """Export the ``encoder`` ("target" or "context") of a training checkpoint to ``out``; return the weights path.

    The weights go through the same validation as :func:`ajepa.load`, so a bad checkpoint fails here, not later.
    """
    from ajepa.inference import load

    return load(checkpoint, encoder=encoder, device="cpu").save(out)


def read_export(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read an exported model: a folder, a ``.safetensors`` (JSON beside it) or the ``.json`` itself.

    Returns:
        ``(state_dict, config)`` where config has ``frontend`` (FrontendConfig), ``encoder`` (EncoderConfig),
        ``clip_seconds`` (float) and ``source_encoder`` (str).

    Raises:
        CheckpointError: a missing file, unreadable or truncated safetensors, malformed JSON, wrong format/version.
    """
    path = Path(path).expanduser()
    weights, cfg_path = export_paths(path)
    # model.safetensors or config.json named directly inside an export folder
    if path.is_file() and path.name == WEIGHTS_NAME and not cfg_path.exists():
        cfg_path = path.parent / CONFIG_NAME
    if path.is_file() and path.name == CONFIG_NAME and not weights.exists():
        weights = path.parent / WEIGHTS_NAME
    for p in (weights, cfg_path):
        if not p.is_file():
            raise CheckpointError(f"{path}: exported model incomplete, {p} is missing")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_path}: not a readable JSON config ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{cfg_path}: not an ajepa exported model config (missing format={EXPORT_FORMAT!r})")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= EXPORT_VERSION:
        raise CheckpointError(f"{cfg_path}: export version {version!r} is not supported (this ajepa reads "
                              f"{EXPORT_VERSION})")
    source = raw.get("source_encoder", "target")
    if source not in ("target", "context", "random"):
        raise CheckpointError(f"{cfg_path}: source_encoder must be 'target', 'context' or 'random', got {source!r}")
    cfg = _parse_config(raw, cfg_path, source)
    if raw.get("sample_rate") is not None and raw["sample_rate"] != cfg["frontend"].sample_rate:
        raise CheckpointError(f"{cfg_path}: sample_rate {raw['sample_rate']} disagrees with frontend.sample_rate "
                              f"{cfg['frontend'].sample_rate}")
    return _read_safetensors(weights), cfg


def read_training_checkpoint(path: str | os.PathLike, encoder: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The ``encoder`` ("target"/"context") state_dict and parsed config of a training checkpoint.

    Raises:
        CheckpointError: anything but a valid ajepa training checkpoint (pickled objects are refused unread).
    """
    path = Path(path)
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError:
        raise
    except Exception as exc:  # torch.load can fail in more ways than checkpoint.py lists; never leak a stack
        raise CheckpointError(f"{path}: not a readable ajepa checkpoint ({type(exc).__name__}: {exc})") from None
    model = ckpt.get("model")
    if not isinstance(model, dict):
        raise CheckpointError(f"{path}: checkpoint has no 'model' state_dict")
    prefix = f"{encoder}_encoder."
    state = {k[len(prefix):]: v for k, v in model.items() if isinstance(k, str) and k.startswith(prefix)}
    if not state:
        hint = " (an MAE run trains only a context encoder: use encoder='context')" if encoder == "target" else ""
        raise CheckpointError(f"{path}: checkpoint has no {prefix}* weights{hint}")
    return state, _parse_config(ckpt, path, encoder)


def _parse_config(raw: dict[str, Any], where: Path, source: str) -> dict[str, Any]:
    frontend = _dataclass_from(FrontendConfig, raw.get("frontend"), "frontend", where,
                               required=("sample_rate", "n_mels", "norm_mean", "norm_std"))
    encoder = _dataclass_from(EncoderConfig, raw.get("encoder"), "encoder", where,
                              required=("embed_dim", "depth", "num_heads", "patch"))
    clip_seconds = raw.get("clip_seconds")
    if (not isinstance(clip_seconds, (int, float)) or isinstance(clip_seconds, bool)
            or not math.isfinite(clip_seconds) or clip_seconds <= 0):
        raise CheckpointError(f"{where}: clip_seconds must be a positive number, got {clip_seconds!r}")
    return {"frontend": frontend, "encoder": encoder, "clip_seconds": float(clip_seconds), "source_encoder": source}


def _dataclass_from(cls: type, values: Any, name: str, where: Path, required: tuple[str, ...]) -> Any:
    if not isinstance(values, dict):
        raise CheckpointError(f"{where}: '{name}' config missing or not a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    missing = [k for k in required if k not in values]
    if unknown or missing:
        problems = ([f"unknown fields {unknown}"] if unknown else []) + ([f"missing {missing}"] if missing else [])
        raise CheckpointError(f"{where}: '{name}' config has {' and '.join(problems)}")
    try:
        return cls(**values)
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid '{name}' config ({exc})") from None


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError, OSError, header parse errors: all mean "not valid weights"
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m ajepa.export CHECKPOINT --out DIR [--encoder target|context]``."""
    parser = argparse.ArgumentParser(prog="python -m ajepa.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="training checkpoint (.pt) written by python -m ajepa.train")
    parser.add_argument("--out", required=True, help="output folder, or NAME.safetensors (+ NAME.json)")
    parser.add_argument("--encoder", choices=("target", "context"), default="target",
                        help="which encoder to export (default: the EMA target encoder)")
    args = parser.parse_args(argv)
    try:
        weights = export_checkpoint(args.checkpoint, args.out, encoder=args.encoder)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _, cfg_path = export_paths(args.out)
    print(f"wrote {weights} and {cfg_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
