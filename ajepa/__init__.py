"""ajepa: self-supervised audio representation learning with a Joint-Embedding Predictive Architecture.

The two functions most users need are re-exported here:

- :func:`ajepa.load` returns an embedder from exported weights or a training checkpoint;
- :func:`ajepa.embed` turns waveforms or audio files into clip (and frame) embeddings;
- :func:`ajepa.from_pretrained` / :meth:`Embedder.save_pretrained` (the Hugging Face hub-mixin shape, offline for
  local folders) and :func:`ajepa.list_models` (the names shipped with the package).

``python -m ajepa embed`` is the command-line front of the same function (:mod:`ajepa.cli.embed`); the function
itself lives in :mod:`ajepa.inference`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see (py.typed); at run time __getattr__ imports them on first use
    from ajepa.inference.loading import embed, from_pretrained, load
    from ajepa.pretrained import list_models

__version__ = "0.1.0"
__all__ = ["embed", "from_pretrained", "list_models", "load", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import ajepa` stays cheap for the data loader workers and the CLI's --help.
    if name in ("embed", "load", "from_pretrained"):
        from ajepa import inference

        return getattr(inference, name)
    if name == "list_models":
        from ajepa.pretrained import list_models

        return list_models
    raise AttributeError(f"module 'ajepa' has no attribute {name!r}")
