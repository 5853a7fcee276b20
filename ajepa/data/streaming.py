"""Stream training clips from tar shards (``python -m ajepa.data.shard`` output) across ranks and workers.

Why a stream: at AudioSet scale (millions of clips) random access to single files is the bottleneck of a
cluster file system; shards are read sequentially, and shuffling happens at two levels instead: the shard
order (per epoch) and a bounded in-memory shuffle buffer.

How the work is split. A *consumer* is one DataLoader worker of one rank: ``consumer = rank * num_workers +
worker_id`` out of ``world_size * num_workers``. Each epoch the shard list is permuted by ``(seed, epoch)``
and consumer ``c`` reads shards ``order[c::num_consumers]``. When there are fewer shards than consumers,
``split="auto"`` (default) falls back to a per-sample split: every consumer reads every shard and keeps the
samples ``i % num_consumers == c`` (correct, but each consumer then reads the whole corpus; write more,
smaller shards instead). ``split="shard"`` makes that case an error.

Equal epochs. Every consumer yields exactly ``samples_per_epoch = (num_samples // num_consumers //
batch_size) * batch_size`` clips per epoch: a consumer whose shards hold more drops the rest of that epoch
(different samples each epoch, since the shard order changes), one whose shards hold fewer wraps around its
own shards. Equal counts are what keep DDP ranks in lockstep (a rank that runs out of data first would hang
the others in all-reduce), and they make the DataLoader's round-robin over workers exact, which the batch
indices and the resume position below rely on.

Batch indices (masks). :class:`ajepa.masking.MaskCollator` derives the masks, and the curriculum step, from
each batch's ``batch_index``. A map-style dataset gets it from :class:`ajepa.data.BatchIndexSampler`; an
iterable dataset has no sampler, and its samples cannot know which batch they will land in. With
``in_order=True`` (the DataLoader default) and equal per-worker counts, the DataLoader returns worker batches
strictly round-robin: worker ``w``'s ``k``-th batch is the ``(k * num_workers + w)``-th batch the main process
sees. :func:`ajepa.training.loader.assign_batch_index` wraps the collate function to stamp exactly that number, ``start +
k * num_workers + w``, with ``k`` taken from the samples' stream position (so it stays right after a resume).
It equals the global batch count since the start of training, the same on every rank at the same step, as
with BatchIndexSampler.

Resume. The stream is infinite (the trainer stops at ``max_steps``), and a consumer's sequence is a pure
function of ``(seed, epoch, consumer, position)``. Because batches arrive
round-robin, the position follows from the batch count alone: the trainer resumes with :meth:`state_at` of the
batches its checkpoint has consumed and :meth:`load_state_dict`, which makes the next iteration start exactly
after them. A run stopped
mid-round expects worker ``w`` next while a new DataLoader starts at worker 0, so the workers' roles are
rotated on resume. Skipping replays the shard reads and the shuffle buffer of the current epoch but
decodes nothing. Ranks run in lockstep, so the state is the same on every rank: save it from rank 0 and
load it on all.

Use ``persistent_workers`` freely (the stream never ends), keep ``in_order=True``, and give the DataLoader and
the stream the same ``batch_size``.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ajepa.data.dataset import apply_gain, pad_clip
from ajepa.data.tar_samples import TarSample, iter_tar_samples, list_shards
from ajepa.errors import AudioInputError, ConfigError
from ajepa.features.audio import clip_samples, load_audio

__all__ = [
    "ShardedAudioStream",
    "assign_shards",
]

logger = logging.getLogger(__name__)

STATE_FORMAT = "ajepa-stream"
STATE_VERSION = 1
# What broken audio bytes can raise while decoding; anything else is a bug and propagates.
_DECODE_ERRORS = (AudioInputError, sf.SoundFileError, ValueError, EOFError)


def assign_shards(num_shards: int, seed: int, epoch: int, consumer: int, num_consumers: int) -> list[int]:
    """The shard indices consumer ``consumer`` of ``num_consumers`` reads in ``epoch``, in reading order.

    The epoch's shard order is a permutation seeded by ``(seed, epoch)``, identical for every consumer; the
    consumers deal it out round-robin, so over one epoch they are disjoint and together cover every shard.
    """
    order = np.random.default_rng((seed, epoch)).permutation(num_shards)
    return [int(i) for i in order[consumer::num_consumers]]


def _shuffle_buffer(items: Iterable, size: int, rng: np.random.Generator) -> Iterator:
    """Approximate shuffle with ``size`` items in memory: emit a random buffered item for each new one."""
    if size <= 1:
        yield from items
        return
    buffer: list = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    for j in rng.permutation(len(buffer)):
        yield buffer[int(j)]


def worker_position() -> tuple[int, int]:
    """``(worker_id, num_workers)`` of the current DataLoader worker; ``(0, 1)`` in the main process."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class ShardedAudioStream(IterableDataset):
    """Infinite, resumable stream of fixed-length training clips from tar shards.

    Items are ``{"wav": (N,) float32, "length": int, "key": str, "path": str, "skipped": list[str],
    "epoch": int, "position": int, "worker": int}``, plus ``"meta"`` (the sample's JSON) when ``with_meta``:

    - ``wav`` has ``N = round(clip_seconds * sample_rate)`` samples; long clips are cropped (randomly when
      ``random_crop``), short ones zero-padded (``length`` counts the real samples); a uniform gain in dB is
      applied, capped so the peak stays <= 1, as in AudioClipDataset;
    - ``path`` is the original relative path (else the key); ``skipped`` lists the keys of undecodable
      samples this one stands in for;
    - ``position`` counts this worker's samples since the start of training and ``worker`` is the logical
      worker (the DataLoader worker id, rotated after a resume that stopped mid-round).

    Wrap the DataLoader's collate function with :func:`ajepa.training.loader.assign_batch_index` to add the ``batch_index`` that
    MaskCollator needs. Every random choice of a sample comes from ``(seed, epoch, consumer, index in epoch)``.

    Args:
        urls: shard folder, ``index.json``, glob pattern, ``.tar`` path or list of them (:func:`list_shards`).
        clip_seconds: clip duration.
        sample_rate: clips are resampled to this rate.
        seed: base seed of shard order, shuffle buffer, crops and gains.
        batch_size: the DataLoader's per-rank batch size; each worker's epoch is a whole number of batches.
        shuffle_buffer: samples held (as encoded bytes) per worker for shuffling; 1 for none.
        rank, world_size: this process's place in distributed training.
        gain_db: ``(low, high)`` uniform gain range in dB, or None.
        random_crop: random crop offset for long clips; False takes the start.
        split: ``"auto"`` | ``"shard"`` | ``"sample"`` (see the module docstring).
        epochs: stop after this epoch count (counted from epoch 0); None never stops.
        with_meta: add each sample's JSON (``{"path", "sha256", "label"}``) as ``"meta"``.

    Raises:
        ConfigError: bad sizes, or too little data for ``world_size`` ranks of ``batch_size``.
        AudioInputError: shards missing.
    """

    def __init__(
        self,
        urls: str | os.PathLike | Sequence[str | os.PathLike],
        clip_seconds: float,
        sample_rate: int = 16000,
        seed: int = 0,
        *,
        batch_size: int = 1,
        shuffle_buffer: int = 1000,
        rank: int = 0,
        world_size: int = 1,
        gain_db: tuple[float, float] | None = (-6.0, 6.0),
        random_crop: bool = True,
        split: str = "auto",
        epochs: int | None = None,
        with_meta: bool = False,
    ) -> None:
        super().__init__()
        if clip_seconds <= 0:
            raise ConfigError(f"clip_seconds must be > 0, got {clip_seconds}")
        if batch_size < 1 or world_size < 1 or shuffle_buffer < 0:
            raise ConfigError(f"batch_size, world_size must be >= 1 and shuffle_buffer >= 0, got "
                              f"{batch_size}, {world_size}, {shuffle_buffer}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in 0..{world_size - 1}, got {rank}")
        if split not in ("auto", "shard", "sample"):
            raise ConfigError(f"split must be auto, shard or sample, got {split!r}")
        if gain_db is not None and gain_db[0] > gain_db[1]:
            raise ConfigError(f"gain_db must be (low, high) with low <= high, got {gain_db}")
        self.shards = list_shards(urls)
        self.num_samples = sum(count for _, count in self.shards)
        self.clip_seconds = clip_seconds
        self.sample_rate = sample_rate
        self.clip_samples = clip_samples(clip_seconds, sample_rate)
        self.seed = seed
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.rank = rank
        self.world_size = world_size
        self.gain_db = tuple(gain_db) if gain_db is not None else None
        self.random_crop = random_crop
        self.split = split
        self.epochs = epochs
        self.with_meta = with_meta
        self.samples_per_epoch(1)   # fail now, not in a worker, when even one worker per rank is too many
        self.failures: dict[str, str] = {}   # key -> reason; per process (workers keep their own)
        # Resume position, in the main process: absolute positions per worker, and the worker count they
        # belong to (None until a state is loaded).
        self._num_workers: int | None = None
        self._positions: list[int] = []
        self._start_epoch = 0
        self._strict = True

    # ----------------------------------------------------------------- sizes
    def samples_per_epoch(self, num_workers: int) -> int:
        """Samples each worker yields per epoch: the equal share, rounded down to whole batches.

        Raises:
            ConfigError: the share is smaller than one batch.
        """
        consumers = self.world_size * max(1, num_workers)
        share = self.num_samples // consumers // self.batch_size * self.batch_size
        if share == 0:
            raise ConfigError(
                f"{self.num_samples} clips cannot fill one batch of {self.batch_size} for each of {consumers} "
                f"consumers (world_size {self.world_size} x num_workers {max(1, num_workers)}); "
                f"lower batch_size or num_workers, or add data"
            )
        return share

    def batches_per_epoch(self, num_workers: int) -> int:
        """Batches one rank's DataLoader yields per epoch (for schedules and progress)."""
        return self.samples_per_epoch(num_workers) // self.batch_size * max(1, num_workers)

    # ----------------------------------------------------------------- resume
    def state_at(self, batches: int, num_workers: int) -> dict:
        """The state after the first ``batches`` batches of a run (DataLoader with ``num_workers``).

        DataLoader batches arrive round-robin, so the position follows from the batch count alone: a trainer
        that knows its global batch index can resume with ``load_state_dict(state_at(index, num_workers))``
        """
        workers = max(1, num_workers)
        positions = [(batches - w + workers - 1) // workers * self.batch_size for w in range(workers)]
        return self._state(workers, positions)

    def _state(self, num_workers: int | None, positions: list[int]) -> dict:
        state = {
            "format": STATE_FORMAT, "version": STATE_VERSION, "seed": self.seed, "world_size": self.world_size,
            "batch_size": self.batch_size, "num_samples": self.num_samples, "num_workers": num_workers,
            "epoch": self._start_epoch, "consumed": [],
        }
        if num_workers is not None and positions:
            per_epoch = self.samples_per_epoch(num_workers)
            epoch = min(positions) // per_epoch
            state.update(epoch=epoch, consumed=[p - epoch * per_epoch for p in positions])
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Continue from ``state`` (from :meth:`state_at`) on the next iteration.

        Args:
            state: a saved position.
            strict: a state from a different seed, batch size, world size or corpus is an error; with
                ``strict=False`` it restarts at the beginning of the saved epoch instead (as it also does
                when the DataLoader's num_workers differs from the saved one).

        Raises:
            ConfigError: not a stream state, or (strict) saved under different settings.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ConfigError(f"not a {STATE_FORMAT} state: {state!r:.200}")
        mine = {"seed": self.seed, "world_size": self.world_size, "batch_size": self.batch_size,
                "num_samples": self.num_samples}
        changed = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        self._start_epoch = int(state["epoch"])
        if changed and strict:
            raise ConfigError(f"the stream state was saved with other settings (saved, now): {changed}; "
                              "pass strict=False to restart at the start of the saved epoch")
        if changed:
            logger.warning("the stream state was saved with other settings (saved, now): %s; restarting at the "
                           "start of epoch %d", changed, self._start_epoch)
        if changed or not state["consumed"]:
            self._num_workers, self._positions = None, []
            return
        workers = int(state["num_workers"])
        per_epoch = self.samples_per_epoch(workers)
        self._num_workers = workers
        self._positions = [self._start_epoch * per_epoch + int(c) for c in state["consumed"]]
        self._strict = strict

    # ----------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[dict]:
        physical, num_workers = worker_position()
        per_epoch = self.samples_per_epoch(num_workers)
        consumers = self.world_size * num_workers
        if self._positions and self._num_workers != num_workers and self._strict:
            raise ConfigError(
                f"the stream state was saved with num_workers={self._num_workers}, the DataLoader has "
                f"{num_workers}; use the same num_workers, or load the state with strict=False"
            )
        resuming = bool(self._positions) and self._num_workers == num_workers
        if self._positions and not resuming:
            logger.warning("the stream state was saved with num_workers=%s, the DataLoader has %d; restarting at "
                           "the start of epoch %d", self._num_workers, num_workers, self._start_epoch)
        # A new DataLoader iterator always starts its round-robin at worker 0, but a run stopped mid-round
        # expects worker `shift` next. Rotating the roles (physical worker -> logical worker) makes the first
        # batch of the new iterator come from the logical worker whose turn it is.
        shift = sum(p // self.batch_size for p in self._positions) % num_workers if resuming else 0
        worker = (physical + shift) % num_workers
        position = self._positions[worker] if resuming else self._start_epoch * per_epoch
        consumer = self.rank * num_workers + worker
        epoch, skip = divmod(position, per_epoch)
        while self.epochs is None or epoch < self.epochs:
            for item in self._epoch(epoch, consumer, consumers, per_epoch, skip):
                item["worker"] = worker
                yield item
            epoch, skip = epoch + 1, 0

    def _consumer_samples(self, epoch: int, consumer: int, consumers: int) -> Iterator[TarSample]:
        """This consumer's raw samples of ``epoch``, cycling over its share (the caller takes what it needs)."""
        by_shard = self.split == "shard" or (self.split == "auto" and len(self.shards) >= consumers)
        if by_shard:
            if len(self.shards) < consumers:
                raise ConfigError(
                    f"{len(self.shards)} shards for {consumers} consumers (world_size {self.world_size} x "
                    f"num_workers {consumers // self.world_size}); write smaller shards, use fewer workers, "
                    f"or split='auto'"
                )
            mine = [self.shards[i][0] for i in assign_shards(len(self.shards), self.seed, epoch, consumer, consumers)]
        else:
            mine = [self.shards[i][0] for i in assign_shards(len(self.shards), self.seed, epoch, 0, 1)]
        while True:
            produced = 0
            index = 0
            for path in mine:
                for sample in iter_tar_samples(path):
                    if by_shard or index % consumers == consumer:
                        produced += 1
                        yield sample
                    index += 1
            if produced == 0:
                raise AudioInputError(f"consumer {consumer} found no samples in its shards {mine[:3]}...")

    def _epoch(self, epoch: int, consumer: int, consumers: int, per_epoch: int, skip: int) -> Iterator[dict]:
        """Yield this consumer's samples ``skip .. per_epoch - 1`` of ``epoch``."""
        raw = islice(self._consumer_samples(epoch, consumer, consumers), per_epoch)
        shuffled = _shuffle_buffer(raw, self.shuffle_buffer, np.random.default_rng((self.seed, epoch, consumer)))
        # A sample that fails to decode is replaced by the last good one (with its own crop and gain), so the
        # per-epoch count, and with it DDP lockstep and the batch indices, never changes. Failures before the
        # first good sample wait in `pending` for one.
        fallback: TarSample | None = None
        pending: list[tuple[int, str]] = []   # (index, key of the failed sample)
        for i, sample in enumerate(shuffled):
            if i < skip:
                fallback = sample
                continue
            item = self._make_item(sample, epoch, consumer, i, per_epoch)
            if item is not None:
                fallback = sample
            elif fallback is not None:
                item = self._make_item(fallback, epoch, consumer, i, per_epoch)
                if item is not None:
                    item["skipped"] = [sample.key]
            if item is None:
                pending.append((i, sample.key))
                continue
            for j, failed_key in pending:
                substitute = self._make_item(fallback, epoch, consumer, j, per_epoch)
                assert substitute is not None  # `fallback` just decoded; a repeat decode of it cannot fail
                substitute["skipped"] = [failed_key]
                yield substitute
            pending = []
            yield item
        if pending:
            raise AudioInputError(
                f"no decodable audio among {per_epoch} samples of consumer {consumer} in epoch {epoch}; "
                f"e.g. {next(iter(self.failures.items()), ('?', '?'))}"
            )

    def _make_item(self, sample: TarSample, epoch: int, consumer: int, index: int, per_epoch: int) -> dict | None:
        """Decode, crop and gain one sample; None (recorded in ``failures``) when it cannot be decoded."""
        rng = np.random.default_rng((self.seed, epoch, consumer, index))
        try:
            clip, length = self._decode_clip(sample.audio, rng)
        except _DECODE_ERRORS as err:
            if sample.key not in self.failures:
                self.failures[sample.key] = f"{type(err).__name__}: {err}"
                logger.warning("skipping undecodable sample %s (%s)", sample.key, self.failures[sample.key])
            return None
        clip = apply_gain(clip, self.gain_db, rng)
        # "path" (the original relative path when the writer recorded it) and "skipped" are what
        # ajepa.data.collate_clips and the trainer's failure report read.
        path = sample.meta.get("path") if isinstance(sample.meta, dict) else None
        item = {"wav": clip, "length": length, "key": sample.key, "path": str(path or sample.key),
                "skipped": [], "epoch": epoch, "position": epoch * per_epoch + index}
        if self.with_meta:
            item["meta"] = sample.meta
        return item

    def _decode_clip(self, audio: bytes, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """Decode only the crop window (in the file's own rate), resample, then cut/pad to clip length."""
        with sf.SoundFile(io.BytesIO(audio)) as fh:
            sr, frames = fh.samplerate, fh.frames
            need = math.ceil(self.clip_samples * sr / self.sample_rate)
            start = 0
            if self.random_crop and frames > need:
                start = int(rng.integers(0, frames - need + 1))
                fh.seek(start)
            data = fh.read(need, dtype="float32", always_2d=True)
        if data.shape[0] == 0:
            raise AudioInputError(f"no samples decoded at offset {start} of {frames}")
        # Mono here: load_audio's (C, N) layout check would reject very short multichannel crops.
        wav = load_audio(data.mean(axis=1), sr=sr, target_sr=self.sample_rate)[: self.clip_samples]
        wav, length = pad_clip(wav, self.clip_samples)
        return wav.contiguous(), length
