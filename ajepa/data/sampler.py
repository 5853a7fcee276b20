"""The batch sampler that makes runs resumable: an endless, seeded, rank-sliced stream of ``(index, batch_index)``."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from ajepa.errors import ConfigError
from ajepa.seeding import seed_from

__all__ = ["BatchIndexSampler"]


class BatchIndexSampler(Sampler[list[tuple[int, int]]]):
    """Infinite, resumable, rank-sharded batch sampler.

    Each epoch is a permutation of ``range(dataset_len)`` drawn from a ``torch.Generator`` seeded by
    ``(seed, epoch)``. A global batch is ``batch_size * world_size`` consecutive items of it; rank ``r`` takes
    the ``r``-th slice of ``batch_size``. Yields lists of ``(index, global_batch_index)`` where
    ``global_batch_index = epoch * batches_per_epoch + batch_in_epoch`` counts batches since the start of
    training and is identical on every rank at the same step. Iteration never ends (the trainer stops at
    ``max_steps``) and starts at global batch ``start_batch``, so a resumed run sees exactly the tail of the
    uninterrupted one.

    With ``drop_last=False`` the last partial global batch of an epoch is filled up from the start of the
    same permutation, so every batch stays full on every rank.

    Raises:
        ConfigError: bad sizes, or a dataset smaller than one global batch.
    """

    def __init__(self, dataset_len: int, batch_size: int, seed: int, drop_last: bool = True,
                 rank: int = 0, world_size: int = 1, start_batch: int = 0) -> None:
        if batch_size < 1 or world_size < 1:
            raise ConfigError(f"batch_size and world_size must be >= 1, got {batch_size}, {world_size}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in 0..{world_size - 1}, got {rank}")
        if start_batch < 0:
            raise ConfigError(f"start_batch must be >= 0, got {start_batch}")
        global_batch = batch_size * world_size
        if dataset_len < global_batch:
            raise ConfigError(
                f"the dataset has {dataset_len} clips, fewer than one global batch of {global_batch} "
                f"(batch_size {batch_size} x world_size {world_size}); lower the batch size or add data"
            )
        self.dataset_len = dataset_len
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch

    @property
    def batches_per_epoch(self) -> int:
        """Global batches per pass over the data."""
        global_batch = self.batch_size * self.world_size
        if self.drop_last:
            return self.dataset_len // global_batch
        return -(-self.dataset_len // global_batch)

    def position(self, global_batch_index: int) -> tuple[int, int]:
        """``(epoch, batch_in_epoch)`` of a global batch index, e.g. for checkpoints."""
        return divmod(global_batch_index, self.batches_per_epoch)

    def epoch_permutation(self, epoch: int) -> torch.Tensor:
        """The shuffled item order of ``epoch``, padded to whole global batches when ``drop_last`` is False."""
        generator = torch.Generator().manual_seed(seed_from(self.seed, epoch))
        perm = torch.randperm(self.dataset_len, generator=generator)
        needed = self.batches_per_epoch * self.batch_size * self.world_size
        if needed > perm.numel():
            perm = torch.cat([perm, perm[: needed - perm.numel()]])
        return perm

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        global_batch = self.batch_size * self.world_size
        epoch, batch_in_epoch = self.position(self.start_batch)
        while True:
            perm = self.epoch_permutation(epoch).tolist()
            for b in range(batch_in_epoch, self.batches_per_epoch):
                begin = b * global_batch + self.rank * self.batch_size
                batch_index = epoch * self.batches_per_epoch + b
                yield [(i, batch_index) for i in perm[begin:begin + self.batch_size]]
            epoch, batch_in_epoch = epoch + 1, 0
