"""The model files: exported encoders (pickle-free safetensors + JSON) and training checkpoints, read and written.

An export is ``<folder>/model.safetensors`` + ``<folder>/config.json`` (or ``<name>.safetensors`` + ``<name>.json``).
The weights are one encoder's ``state_dict`` with ``ViTEncoder``'s keys, stored as float32, float16 or int8
(:mod:`ajepa.inference.quantization`: per-channel scales beside the int8 matrices; read back as float32). ``config.json`` holds
``format`` (``"ajepa-encoder"``), ``version`` (1), ``frontend`` (``FrontendConfig``, with the training data's
normalisation statistics), ``encoder`` (``EncoderConfig``), ``sample_rate``, ``clip_seconds``, ``source_encoder``
(``"target"``, ``"context"`` or ``"random"``) and ``readout`` (``{"pooling", "average_layers"}``, the model's
recommended read-out; absent in exports written before it was recorded, which then get
:data:`ajepa.inference.readout.LEGACY_READOUT`). A training checkpoint (``ajepa.checkpoint``) holds the whole model's ``state_dict`` under
``model`` (``context_encoder.*``, ``target_encoder.*``, ``predictor.*``) and the run's config; either encoder can
be read out of it. Writing and reading are both validated: a file that does not describe a working encoder fails
with :class:`ajepa.errors.CheckpointError`, never later. ``python -m ajepa export`` writes exports
(:mod:`ajepa.cli.export`); ``ajepa.load`` reads both kinds.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ajepa.checkpoint import load_checkpoint
from ajepa.io import atomic_write
from ajepa.errors import CheckpointError, ConfigError
from ajepa.features.audio import MAX_CLIP_SECONDS
from ajepa.features.logmel import FrontendConfig
from ajepa.inference.choices import WEIGHTS_DTYPES
from ajepa.inference.model_card import infer_license
from ajepa.inference.readout import Readout
from ajepa.models.sizes import EncoderConfig
from ajepa.models.vit import ViTEncoder
from ajepa.inference.quantization import dequantize_int8, quantize_int8

__all__ = ["CONFIG_NAME", "EXPORT_FORMAT", "EXPORT_VERSION", "WEIGHTS_DTYPES", "WEIGHTS_NAME", "check_encoder_weights",
           "check_weights", "export_paths", "parse_model_settings", "read_export", "read_json_config",
           "read_model_file", "read_safetensors", "read_training_checkpoint", "write_export"]

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


def write_export(state: dict[str, Tensor], config: dict[str, Any], out: str | os.PathLike, *,
                 weights_dtype: str = "float32") -> Path:
    """Write ``state`` as safetensors and ``config`` as JSON (each atomically); return the weights path.

    ``weights_dtype`` (one of :data:`WEIGHTS_DTYPES`): ``"float16"`` halves the file; ``"int8"`` quarters it
    (per-channel int8 matrices, float16 vectors; :mod:`ajepa.inference.quantization`). Loading computes in float32 either way.
    """
    from safetensors.torch import save_file

    if weights_dtype not in WEIGHTS_DTYPES:
        raise ValueError(f"exported weights are one of {WEIGHTS_DTYPES}, not {weights_dtype!r}")
    weights, cfg_path = export_paths(out)
    weights.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses views that share storage; owned contiguous CPU copies are always accepted.
    if weights_dtype == "int8":
        tensors = quantize_int8(state)  # new tensors already
    else:
        dtype = getattr(torch, weights_dtype)
        tensors = {k: v.detach().to("cpu", dtype).contiguous().clone() for k, v in state.items()}
    metadata = {"format": EXPORT_FORMAT, "weights_dtype": weights_dtype}
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write(cfg_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return weights


def read_model_file(path: str | os.PathLike, encoder: str | None = None
                    ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Either kind of model file: an export (a folder, ``.safetensors`` or ``.json``) or a training checkpoint.

    ``encoder`` names the encoder wanted ("target"/"context"); ``None`` takes the file's default
    (:func:`read_training_checkpoint`). Returns ``(state_dict, config)`` as :func:`read_export` does.

    Raises:
        CheckpointError: an unreadable file, or an export that holds another encoder than the one named.
    """
    path = Path(path).expanduser()
    if path.is_dir() or path.suffix.lower() in (".safetensors", ".json"):
        state, cfg = read_export(path)
        if encoder is not None and encoder != cfg["source_encoder"]:
            raise CheckpointError(
                f"{path}: this export holds the {cfg['source_encoder']} encoder, not the {encoder} encoder; "
                f"export the other one from the training checkpoint with --encoder {encoder}"
            )
        return state, cfg
    return read_training_checkpoint(path, encoder)


def check_encoder_weights(encoder: EncoderConfig, state: dict[str, Any], where: str | os.PathLike) -> None:
    """``state`` holds exactly the weights of a ``ViTEncoder(encoder)``, checked against one built on the meta
    device (shapes, no memory), so that a config asking for more than its weights hold fails before anything of
    that size is allocated. Raises CheckpointError (:func:`check_weights`)."""
    with torch.device("meta"):
        skeleton = ViTEncoder(encoder)
    check_weights(skeleton.state_dict(), state, where)


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
    raw = read_json_config(cfg_path, EXPORT_FORMAT, "exported model")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= EXPORT_VERSION:
        raise CheckpointError(f"{cfg_path}: export version {version!r} is not supported (this ajepa reads "
                              f"{EXPORT_VERSION})")
    source = raw.get("source_encoder", "target")
    if source not in ("target", "context", "random"):
        raise CheckpointError(f"{cfg_path}: source_encoder must be 'target', 'context' or 'random', got {source!r}")
    cfg = parse_model_settings(raw, cfg_path, source)
    cfg["readout"] = _parse_readout(raw.get("readout"), cfg_path)
    license_id = raw.get("license", "unknown")
    if not isinstance(license_id, str) or not 0 < len(license_id) <= 200:
        raise CheckpointError(f"{cfg_path}: 'license' must be a short string (an SPDX id), got {license_id!r}")
    cfg["license"] = license_id
    if raw.get("sample_rate") is not None and raw["sample_rate"] != cfg["frontend"].sample_rate:
        raise CheckpointError(f"{cfg_path}: sample_rate {raw['sample_rate']} disagrees with frontend.sample_rate "
                              f"{cfg['frontend'].sample_rate}")
    return read_safetensors(weights), cfg


def read_training_checkpoint(path: str | os.PathLike, encoder: str | None = None
                             ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The ``encoder`` ("target"/"context") state_dict and parsed config of a training checkpoint.

    ``encoder=None`` takes the target encoder, or the only encoder the checkpoint holds (an MAE run trains a
    context encoder alone), or the context encoder of a run with a frozen teacher (``objective.teacher``: its
    target encoder is the teacher it was given, not what it learned). Training checkpoints record no read-out:
    ``config["readout"]`` is ``None``.

    Raises:
        CheckpointError: anything but a valid ajepa training checkpoint (pickled objects are refused unread), or
            a named encoder that the checkpoint does not hold.
    """
    path = Path(path)
    ckpt = load_checkpoint(path)  # every way of failing is a CheckpointError there
    model = ckpt.get("model")
    if not isinstance(model, dict):
        raise CheckpointError(f"{path}: checkpoint has no 'model' state_dict")
    present = [e for e in ("target", "context")
               if any(isinstance(k, str) and k.startswith(f"{e}_encoder.") for k in model)]
    run = ckpt.get("config")
    if encoder is None:
        if not present:
            raise CheckpointError(f"{path}: checkpoint has no target_encoder.* or context_encoder.* weights")
        encoder = "context" if "context" in present and _frozen_teacher(run) else present[0]
    elif encoder not in present:
        held = f"it holds only the {present[0]} encoder" if len(present) == 1 else "it holds no encoder weights"
        raise CheckpointError(f"{path}: checkpoint has no {encoder}_encoder.* weights ({held})")
    prefix = f"{encoder}_encoder."
    state = {k[len(prefix):]: v for k, v in model.items() if isinstance(k, str) and k.startswith(prefix)}
    cfg = parse_model_settings(_model_settings(ckpt), path, encoder)
    cfg["readout"] = None
    cfg["license"] = infer_license(run.get("data") if isinstance(run, dict) else None)
    return state, cfg


def _frozen_teacher(run: Any) -> bool:
    """Whether a checkpoint's run config names a frozen teacher (``objective.teacher``)."""
    objective = run.get("objective") if isinstance(run, dict) else None
    return isinstance(objective, dict) and objective.get("teacher") is not None


def _model_settings(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``frontend``, ``encoder`` and ``clip_seconds`` of a training checkpoint, read from its run config
    (checkpoints written before the config was their one source also hold them at the top level)."""
    config = ckpt.get("config")
    if not isinstance(config, dict) or "frontend" not in config:
        return ckpt
    model, data = config.get("model"), config.get("data")
    return {"frontend": config.get("frontend"), "encoder": model.get("encoder") if isinstance(model, dict) else None,
            "clip_seconds": data.get("clip_seconds") if isinstance(data, dict) else None}


def _parse_readout(raw: Any, where: Path) -> Readout | None:
    """The recorded read-out, or ``None`` for an export that records none."""
    if raw is None:
        return None
    try:
        return Readout.from_config(raw)
    except ValueError as exc:
        raise CheckpointError(f"{where}: invalid readout ({exc})") from None


def parse_model_settings(raw: dict[str, Any], where: Path, source: str = "target") -> dict[str, Any]:
    """``frontend`` (FrontendConfig), ``encoder`` (EncoderConfig), ``clip_seconds`` and ``source_encoder`` of a
    model file's config, each checked against its bounds before anything is built (CheckpointError naming it)."""
    frontend = _dataclass_from(FrontendConfig, raw.get("frontend"), "frontend", where,
                               required=("sample_rate", "n_mels", "norm_mean", "norm_std"))
    encoder = _dataclass_from(EncoderConfig, raw.get("encoder"), "encoder", where,
                              required=("embed_dim", "depth", "num_heads", "patch"))
    clip_seconds = raw.get("clip_seconds")
    if (not isinstance(clip_seconds, (int, float)) or isinstance(clip_seconds, bool)
            or not math.isfinite(clip_seconds) or not 0 < clip_seconds <= MAX_CLIP_SECONDS):
        raise CheckpointError(f"{where}: clip_seconds must be a number in (0, {MAX_CLIP_SECONDS:g}], "
                              f"got {clip_seconds!r}")
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


def read_json_config(path: Path, fmt: str, what: str) -> dict[str, Any]:
    """A model file's ``config.json`` as a dict whose ``format`` is ``fmt``; else a CheckpointError naming ``what``
    the file should have been."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        raise CheckpointError(f"{path}: not an ajepa {what} config (missing format={fmt!r})")
    return raw


def read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError, OSError, header parse errors: all mean "not valid weights"
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    try:
        return dequantize_int8(tensors)
    except ValueError as exc:
        raise CheckpointError(f"{path}: inconsistent int8 weights ({exc})") from None


def check_weights(expected: dict[str, Tensor], state: dict[str, Any], where: str | os.PathLike) -> None:
    """``state`` has exactly ``expected``'s names and shapes (take ``expected`` from a module built on the meta
    device: shapes without memory), float tensors where the model has them, all finite; else a CheckpointError
    naming the first that is not."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: weights do not match the configured model "
            f"(missing {len(missing)}: {missing[:3]}, unexpected {len(unexpected)}: {unexpected[:3]})"
        )
    for key, ref in expected.items():
        got = state[key]
        if not isinstance(got, Tensor) or tuple(got.shape) != tuple(ref.shape):
            shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
            raise CheckpointError(f"{where}: weight {key!r} has shape {shape}, the config needs {tuple(ref.shape)}")
        if got.is_floating_point() != ref.is_floating_point():
            raise CheckpointError(f"{where}: weight {key!r} has dtype {got.dtype}, the model needs {ref.dtype}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"{where}: weight {key!r} holds NaN or infinite values; the model is damaged")
