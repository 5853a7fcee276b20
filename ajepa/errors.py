"""The exceptions ajepa raises on bad user input.

Each subclasses :class:`AjepaError` and ``ValueError``, so that callers who already guard against bad values keep
working, and each message names the offending source and the reason.
"""

from __future__ import annotations

__all__ = ["AjepaError", "AudioInputError", "CheckpointError", "ConfigError", "OutputError"]


class AjepaError(ValueError):
    """Base of the package's own errors: catching it catches every bad input ajepa reports."""


class AudioInputError(AjepaError):
    """Audio that cannot be used: missing or unreadable file, empty, non-finite, wrong shape or dtype."""


class CheckpointError(AjepaError):
    """A file that is not a valid ajepa checkpoint or exported model."""


class ConfigError(AjepaError):
    """A configuration that cannot work (e.g. a masking recipe that cannot fit the patch grid)."""


class OutputError(AjepaError):
    """An output that cannot be written where it was asked for (a missing or read-only folder, a full disk)."""
