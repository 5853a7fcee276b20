"""Context and target masks on the time-frequency patch grid: pure functions of a seed and the batch index.

- :mod:`~ajepa.masking.config`: :class:`MaskingConfig` (``configs/masking/*.yaml``) and :class:`Masks`.
- :mod:`~ajepa.masking.blocks`: I-JEPA-style target blocks (``multiblock``, ``time``, ``frequency``, ``curriculum``).
- :mod:`~ajepa.masking.inverse`: inverse block masking (``inverse``): visible blocks, every other cell a target.
- :mod:`~ajepa.masking.collate`: the masks of each training batch, ``copies`` masked copies per clip.
- :mod:`~ajepa.masking.gather`: :func:`apply_masks`, the gather every model and objective uses.

A new strategy is a masker class (``__call__(rows, generator, step) -> Masks``) in its own module, its name in
:data:`STRATEGIES` and a branch in :func:`build_masker`, and a ``configs/masking/<name>.yaml``.
"""

from ajepa.masking.blocks import TimeFrequencyBlockMasker, curriculum_probability
from ajepa.masking.collate import MaskCollator, batch_seed, build_masker
from ajepa.masking.config import STRATEGIES, MaskingConfig, Masks
from ajepa.masking.gather import apply_masks
from ajepa.masking.inverse import InverseBlockMasker

__all__ = ["STRATEGIES", "InverseBlockMasker", "MaskCollator", "MaskingConfig", "Masks", "TimeFrequencyBlockMasker",
           "apply_masks", "batch_seed", "build_masker", "curriculum_probability"]
