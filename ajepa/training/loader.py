"""Training data plumbing: the configured dataset, per-rank mask collation and the resumable loader."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ajepa.training import distributed as D
from ajepa.training.config import DataConfig, RunConfig
from ajepa.data.dataset import AudioClipDataset, collate_clips, make_loader, single_thread_worker_init
from ajepa.data.sampler import BatchIndexSampler
from ajepa.data.streaming import ShardedAudioStream, worker_position
from ajepa.errors import ConfigError
from ajepa.data.synthetic import SyntheticAudioDataset
from ajepa.masking import MaskCollator

__all__ = ["BatchIndexCollate", "RankMaskCollate", "assign_batch_index", "build_dataset", "build_loader"]


def build_dataset(data: DataConfig, sample_rate: int, seed: int, info: D.DistInfo = D.DistInfo()
                  ) -> torch.utils.data.Dataset:
    """Synthetic corpus, audio files (map-style) or tar shards (a rank-sharded stream), yielding sample dicts."""
    if data.source == "synthetic":
        return SyntheticAudioDataset(data.synthetic_size, data.clip_seconds, seed, sample_rate)
    if data.source == "shards":
        return ShardedAudioStream(data.root, data.clip_seconds, sample_rate=sample_rate, seed=seed,
                                  batch_size=data.batch_size, shuffle_buffer=data.shuffle_buffer, rank=info.rank,
                                  world_size=info.world_size, gain_db=data.gain_db, random_crop=data.random_crop)
    return AudioClipDataset(data.root, data.clip_seconds, sample_rate=sample_rate, seed=seed,
                            gain_db=data.gain_db, random_crop=data.random_crop, sampling=data.sampling,
                            exclude=data.exclude, cache_mb=data.cache_mb, crops=data.crops_per_item)


class RankMaskCollate:
    """Collate one rank's samples and attach that rank's rows of the *global* batch's masks.

    The masker draws per-batch shapes and cuts the context to the batch minimum, so masks depend on the batch
    size. Drawing them for all ``batch_size * world_size`` clips of the global batch (``copies`` rows each) and
    slicing makes a W-process run see exactly the masks of a 1-process run with W times the batch. The output also keeps
    ``"skipped"`` (unreadable files), which the trainer reports.
    """

    def __init__(self, collator: MaskCollator, rank: int = 0, world_size: int = 1) -> None:
        self.collator, self.rank, self.world_size = collator, rank, world_size

    def __call__(self, samples: list[dict]) -> dict:
        batch = collate_clips(samples)
        b = batch["wav"].shape[0]  # clips: samples x crops per item
        masks = self.collator.masks(b * self.world_size, batch["batch_index"])
        rows = slice(self.rank * b * masks.copies, (self.rank + 1) * b * masks.copies)
        batch["context_idx"] = masks.context_idx[rows].contiguous()
        batch["target_idx"] = masks.target_idx[rows].contiguous()
        return batch


def build_loader(cfg: RunConfig, dataset: torch.utils.data.Dataset, grid: tuple[int, int], info: D.DistInfo,
                 start_batch: int) -> tuple[torch.utils.data.DataLoader, int]:
    """An endless loader of this rank's micro-batches from global batch ``start_batch`` on (exact resume), and the
    number of global batches per epoch (what turns a batch count into the checkpoint's data position).

    Map-style datasets go through :class:`BatchIndexSampler`; a :class:`ShardedAudioStream` numbers its own
    batches and is fast-forwarded to ``start_batch`` (its position follows from the batch count alone).
    """
    collate = RankMaskCollate(MaskCollator(cfg.masking, grid, cfg.seed), info.rank, info.world_size)
    workers = cfg.data.num_workers
    if isinstance(dataset, ShardedAudioStream):
        if start_batch:
            dataset.load_state_dict(dataset.state_at(start_batch, workers))
        extra = {"persistent_workers": True, "worker_init_fn": single_thread_worker_init} if workers else {}
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=cfg.data.batch_size, collate_fn=assign_batch_index(collate, cfg.data.batch_size),
            num_workers=workers, pin_memory=torch.cuda.is_available(), **extra)
        return loader, max(1, dataset.batches_per_epoch(workers))
    sampler = BatchIndexSampler(len(dataset), cfg.data.batch_size, cfg.seed, drop_last=cfg.data.drop_last,
                                rank=info.rank, world_size=info.world_size, start_batch=start_batch)
    return make_loader(dataset, sampler, collate, workers), max(1, sampler.batches_per_epoch)


class BatchIndexCollate:
    """Collate wrapper that gives each batch of a :class:`ShardedAudioStream` its global ``batch_index``.

    ``batch_index = start + (position // batch_size) * num_workers + worker`` (the samples' logical worker):
    the batch's place in the DataLoader's round-robin output.
    """

    def __init__(self, collate_fn: Callable[[list[dict]], dict], batch_size: int, start: int = 0) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.start = start

    def __call__(self, samples: list[dict]) -> dict:
        # The logical worker (see ShardedAudioStream.__iter__), not get_worker_info's id, fixes the turn.
        worker, num_workers = int(samples[0]["worker"]), worker_position()[1]
        first = int(samples[0]["position"])
        positions = [int(s["position"]) for s in samples]
        if first % self.batch_size or len(samples) != self.batch_size or positions != list(
            range(first, first + len(samples))
        ):
            raise ConfigError(
                f"a stream batch must be {self.batch_size} consecutive samples starting at a multiple of "
                f"{self.batch_size}; got positions {positions[:4]}... Give the DataLoader and the "
                "ShardedAudioStream the same batch_size"
            )
        batch_index = self.start + (first // self.batch_size) * num_workers + worker
        for sample in samples:
            sample["batch_index"] = batch_index
        return self.collate_fn(samples)


def assign_batch_index(collate_fn: Callable[[list[dict]], dict], batch_size: int, start: int = 0) -> BatchIndexCollate:
    """Wrap ``collate_fn`` (e.g. a MaskCollator) for a :class:`ShardedAudioStream` DataLoader.

    Args:
        collate_fn: receives the samples with ``"batch_index"`` filled in; must return a dict.
        batch_size: the DataLoader's (and the stream's) batch size.
        start: added to every batch index (e.g. when switching to the stream mid-training).
    """
    return BatchIndexCollate(collate_fn, batch_size, start)
