"""The one way a random stream gets its seed here: a hash of the run's seed and a position.

Every random choice of a run is a pure function of ``(seed, position)`` (a batch index, an epoch, a step), never
of process history, which is what makes runs resume bit-for-bit and independent of worker counts.
"""

from __future__ import annotations

import numpy as np

from ajepa.errors import ConfigError

__all__ = ["seed_from"]


def seed_from(*parts: int, bits: int = 63) -> int:
    """A ``bits``-bit seed hashed from non-negative ints (``numpy.random.SeedSequence``): nearby tuples such as
    ``(seed, 0)`` and ``(seed, 1)`` give unrelated streams, free of the collisions of ``seed * c + index``.

    63 bits suit ``torch.manual_seed`` of the global RNG; ``torch.Generator`` takes the full 64.
    """
    if any(int(p) < 0 for p in parts):
        raise ConfigError(f"seed parts must be >= 0, got {parts}")
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in 1..64, got {bits}")
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> (64 - bits))
