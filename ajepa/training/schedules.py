"""Training schedules as pure functions of the step.

Each function returns the value for one step, so the trainer can recompute any schedule exactly after a resume
instead of carrying scheduler state in the checkpoint.
"""

from __future__ import annotations

import math


def linear_schedule(step: int, total: int, start: float, end: float) -> float:
    """Linear interpolation from ``start`` (step 0) to ``end`` (step ``total``), held at ``end`` afterwards.

    Used for the weight-decay and EMA-momentum schedules.
    """
    if total <= 0:
        return end
    frac = min(max(step, 0), total) / total
    return start + (end - start) * frac


def cosine_schedule(step: int, total: int, start: float, end: float) -> float:
    """Half-cosine from ``start`` (step 0) to ``end`` (step ``total``), held at ``end`` afterwards."""
    if total <= 0:
        return end
    frac = min(max(step, 0), total) / total
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * frac))


def warmup_cosine(step: int, total: int, warmup: int, peak: float, final: float, start: float = 0.0) -> float:
    """Learning rate: linear warm-up from ``start`` to ``peak`` over ``warmup`` steps, then cosine to ``final``.

    Args:
        step: the optimisation step (0-based).
        total: the step at which ``final`` is reached (normally ``max_steps``).
        warmup: warm-up length in steps (0 disables warm-up).
        peak: the learning rate at the end of warm-up.
        final: the learning rate at ``total`` and after.
        start: the learning rate at step 0.
    """
    if warmup > 0 and step < warmup:
        return start + (peak - start) * step / warmup
    return cosine_schedule(step - warmup, total - warmup, peak, final)


# Schedules selectable by name in configs (``optim.ema_schedule``); each maps (step, total, start, end) to a value.
RAMPS = {"linear": linear_schedule, "cosine": cosine_schedule}
