"""Training data plumbing: the configured dataset, per-rank mask collation and the resumable loader."""

from __future__ import annotations

import torch

from ajepa import distributed as D
from ajepa.config import DataConfig, RunConfig
from ajepa.data.dataset import AudioClipDataset, BatchIndexSampler, collate_clips, make_loader, single_thread_worker_init
from ajepa.data.streaming import ShardedAudioStream, assign_batch_index
from ajepa.data.synthetic import SyntheticAudioDataset
from ajepa.masking import MaskCollator

__all__ = ["RankMaskCollate", "build_dataset", "build_loader"]


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
                            exclude=data.exclude, cache_mb=data.cache_mb)


class RankMaskCollate:
    """Collate one rank's samples and attach that rank's rows of the *global* batch's masks.

    The masker draws per-batch shapes and cuts the context to the batch minimum, so masks depend on the batch
    size. Drawing them for all ``batch_size * world_size`` clips of the global batch and slicing makes a
    W-process run see exactly the masks of a 1-process run with W times the batch. The output also keeps
    ``"skipped"`` (unreadable files), which the trainer reports.
    """

    def __init__(self, collator: MaskCollator, rank: int = 0, world_size: int = 1) -> None:
        self.collator, self.rank, self.world_size = collator, rank, world_size

    def __call__(self, samples: list[dict]) -> dict:
        batch = collate_clips(samples)
        b = len(samples)
        masks = self.collator.masks(b * self.world_size, batch["batch_index"])
        rows = slice(self.rank * b, (self.rank + 1) * b)
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
