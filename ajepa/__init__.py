"""ajepa: self-supervised audio representation learning with a Joint-Embedding Predictive Architecture.

The two functions most users need are re-exported here:

- :func:`ajepa.load` returns an embedder from exported weights or a training checkpoint;
- :func:`ajepa.embed` turns waveforms or audio files into clip (and frame) embeddings.

``python -m ajepa embed`` is the command-line front of the same function (:mod:`ajepa.cli.embed`); the function
itself lives in :mod:`ajepa.inference`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["embed", "load", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import ajepa` stays cheap for the data loader workers and the CLI's --help.
    if name in ("embed", "load"):
        from ajepa import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'ajepa' has no attribute {name!r}")
