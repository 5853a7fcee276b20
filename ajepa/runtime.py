"""Process-wide compute settings of a run: CPU threads, deterministic kernels, autocast, compilation."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["autocast_dtype", "cpu_has_native_bf16", "cpu_thread_count", "cpu_threads", "deterministic", "maybe_compile"]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The training autocast dtype; None means fp32. ``auto``: bf16 on CUDA, fp32 on the CPU.

    On the CPU a training step at the recipe's shapes (batch 32 on an 8 x 6 grid) ran slower under bf16 autocast
    than in fp32 even with native bf16 (120 against 150 clips/s, AMD EPYC with AVX512-BF16, docs/BENCHMARKS.md):
    the backward pass and the many small matrices do not gain. ``trainer.precision=bf16`` forces it.
    """
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def maybe_compile(module: nn.Module, enabled: bool, backend: str = "inductor") -> nn.Module:
    """``torch.compile(module, backend=backend)`` when enabled.

    The context and target sizes change with every batch's masks, so the graph is compiled with dynamic shapes
    from the start: one compilation instead of a static one that is thrown away at the second batch.
    """
    return torch.compile(module, backend=backend, dynamic=True) if enabled else module


def cpu_thread_count(setting: int | str, num_workers: int, procs_per_node: int) -> int | None:
    """Intra-op threads for CPU training: ``auto`` gives each process the cores left over by its DataLoader
    workers (at least 1), unless ``OMP_NUM_THREADS`` already decides; None leaves torch's default.

    Oversubscribed cores are far worse than idle ones here: every parallel op waits for its slowest thread,
    and a descheduled thread stalls it for a whole time slice (10x slower steps on a busy 2-core machine).
    """
    if setting != "auto":
        return int(setting)
    if "OMP_NUM_THREADS" in os.environ:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, procs_per_node) - num_workers)


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """``torch.set_num_threads(count)`` for the duration of the run, then the caller's setting back."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the duration of the run, then the caller's setting back."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn_only)
