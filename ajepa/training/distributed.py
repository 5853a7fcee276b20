"""torchrun / DistributedDataParallel helpers.

``torchrun --nproc_per_node=N -m ajepa.train ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; a plain
``python -m ajepa.train`` sets none and runs as a world of one without any process group. Under SLURM with
several tasks (``srun``, or the submitit launcher) and no torchrun, rank and world size come from
``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID`` and the rendezvous is the job's first node, on a port
derived from the job id (override with ``MASTER_ADDR`` / ``MASTER_PORT``). NCCL is used on CUDA, gloo on CPU.
Every helper is a no-op (or the identity) in a world of one, so the trainer calls them unconditionally.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when a process group is (to be) used."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 is the only process that logs and writes files."""
        return self.rank == 0


def env_dist_info(env: Mapping[str, str] | None = None) -> DistInfo:
    """This process's place from the torchrun (or else SLURM) environment; a world of one without either."""
    env = os.environ if env is None else env
    if "RANK" not in env and int(env.get("SLURM_NTASKS", 1)) > 1:
        return DistInfo(rank=int(env["SLURM_PROCID"]), world_size=int(env["SLURM_NTASKS"]),
                        local_rank=int(env.get("SLURM_LOCALID", 0)))
    return DistInfo(
        rank=int(env.get("RANK", 0)),
        world_size=int(env.get("WORLD_SIZE", 1)),
        local_rank=int(env.get("LOCAL_RANK", 0)),
    )


def rendezvous_url(env: Mapping[str, str] | None = None) -> str:
    """``env://`` under torchrun; under SLURM ``tcp://<first node>:<port>`` (see the module docstring)."""
    env = os.environ if env is None else env
    if "RANK" in env:
        return "env://"
    addr = env.get("MASTER_ADDR")
    if addr is None:
        nodes = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_JOB_NODELIST"]], check=True,
                               capture_output=True, text=True).stdout.split()
        addr = nodes[0]
    # A port per job, so two jobs sharing a first node do not collide.
    port = int(env.get("MASTER_PORT", 20000 + int(env.get("SLURM_JOB_ID", 0)) % 20000))
    return f"tcp://{addr}:{port}"


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group (NCCL for CUDA devices, gloo otherwise) and return this rank's info.

    ``device`` must already be this rank's device (see :func:`rank_device`).
    """
    info = env_dist_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # device_id binds NCCL communicators to this rank's GPU up front instead of guessing at first use.
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, init_method=rendezvous_url(), rank=info.rank,
                                world_size=info.world_size, **kwargs)
    return info


def rank_device(requested: str, info: DistInfo) -> torch.device:
    """The device this rank trains on: ``auto`` picks CUDA when available; under torchrun each rank takes
    the GPU of its ``LOCAL_RANK``."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={requested!r} was requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def shutdown_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when the world has more than one process.

    Only parameters that require gradients are all-reduced, i.e. the context encoder and the predictor of an
    AudioJEPA; its EMA target encoder is frozen and stays identical on every rank because it is updated from
    identical, already-averaged context weights. Buffers are not broadcast each step: the model's buffers
    are constants (position embeddings).
    """
    if not info.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``values`` over ranks (a new tensor; the input is left unchanged)."""
    values = values.detach().clone()
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= info.world_size
    return values


def broadcast_object(obj: T, info: DistInfo, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (picklable objects only; for small control values)."""
    if not info.enabled:
        return obj
    holder: list[Any] = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_objects(obj: T, info: DistInfo) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered

