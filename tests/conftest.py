"""Shared fixtures. Keep generic: anything specific to one module lives in its own test file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-audio folder (``$AJEPA_SHARED_DATA`` or ``../shared/data`` from the repo root); skip if absent."""
    root = Path(os.environ.get("AJEPA_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
    if not root.is_dir():
        pytest.skip(f"real audio data not found at {root} (set AJEPA_SHARED_DATA to run these tests)")
    return root
