"""The exceptions ajepa raises on bad user input.

Each subclasses ``ValueError`` so that callers who already guard against bad values keep working,
and each message names the offending source and the reason.
"""

from __future__ import annotations


class AudioInputError(ValueError):
    """Audio that cannot be used: missing or unreadable file, empty, non-finite, wrong shape or dtype."""


class CheckpointError(ValueError):
    """A file that is not a valid ajepa checkpoint or exported model."""


class ConfigError(ValueError):
    """A configuration that cannot work (e.g. a masking recipe that cannot fit the patch grid)."""
