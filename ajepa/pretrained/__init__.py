"""The default encoder shipped inside the package: what ``ajepa.load()`` and ``ajepa.embed(wav)`` use with no model.

``default/`` holds an export (``model.safetensors`` in int8, under 2 MiB + ``config.json`` with its recommended read-out),
written by one command from the ``cpu15`` recipe (``make default-model``; ajepa/pretrained/default/README.md has the data, its
licences, and the probe figures). It is read from disk: nothing is downloaded. The weights were trained on
ESC-50 audio among others and carry its non-commercial terms (CC BY-NC).
"""

from __future__ import annotations

from pathlib import Path

from ajepa.errors import CheckpointError

__all__ = ["DEFAULT_LICENSE", "DEFAULT_MODEL_DIR", "default_model_path", "list_models"]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
# The terms of the shipped weights (their LICENSE file says why); said once per process when they load.
DEFAULT_LICENSE = "CC-BY-NC-4.0"
# Model names that ajepa.from_pretrained / ajepa.load accept, and the folder of each.
MODELS = {"default": DEFAULT_MODEL_DIR}


def list_models() -> list[str]:
    """The names of the models shipped with the package (``ajepa.from_pretrained(name)``)."""
    return sorted(MODELS)


def default_model_path() -> Path:
    """The folder of the shipped default export.

    Raises:
        CheckpointError: the package was installed without its weights (e.g. a copy that dropped package data).
    """
    if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file() or not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise CheckpointError(
            f"the default ajepa model is missing from {DEFAULT_MODEL_DIR} (a package built without its data?); "
            "reinstall ajepa, or pass model= / a path: an exported model (python -m ajepa export) or a checkpoint")
    return DEFAULT_MODEL_DIR
