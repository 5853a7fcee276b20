"""Optional dependencies: the base install embeds; training, evaluation, benchmarks and the benchmark kits come with
extras (``pip install 'ajepa[train]'``). A missing one is an :class:`MissingExtraError` naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "require"]

# What each extra is for (pyproject.toml lists its packages).
EXTRAS = {
    "train": "pre-training (python -m ajepa.train: Hydra configs, plots, TensorBoard, the synthetic corpus)",
    "eval": "the evaluations (ajepa.evals: probes, suite, fine-tuning)",
    "bench": "the benchmarks' reference implementations (librosa)",
    "hear": "the HEAR 2021 validator",
    "xares": "the X-ARES benchmark kit",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which ``pip install 'ajepa[...]'`` brings it."""


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra`` (and ``package``, the distribution
    name when it differs from the module's, e.g. ``hydra-core`` for ``hydra``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = package or module.split(".")[0]
        raise MissingExtraError(f"{name} is not installed; it comes with pip install 'ajepa[{extra}]' "
                                f"({EXTRAS[extra]})") from exc
