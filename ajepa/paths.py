"""Where the package's own files are: the Hydra configs (a source checkout's ``configs/`` or a wheel's copy)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["config_dir"]


def config_dir() -> Path:
    """The Hydra configs: the repo's top-level ``configs/`` in a source checkout (or editable install), else the
    copy an installed wheel carries as ``ajepa/configs/``."""
    here = Path(__file__).resolve().parent
    source = here.parent / "configs"
    return source if (source / "config.yaml").is_file() else here / "configs"
