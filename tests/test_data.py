"""Tests of ajepa.data: the synthetic corpus, the clip dataset, the batch sampler and the loader."""

from __future__ import annotations

import json
import logging
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ajepa.data import (
    NUM_CLASSES,
    AudioClipDataset,
    BatchIndexSampler,
    SyntheticAudioDataset,
    collate_clips,
    make_loader,
    synthesize_clip,
)
from ajepa.training.config import DataConfig
from ajepa.errors import AudioInputError, ConfigError
from ajepa.features.audio import list_audio_files, load_audio

SR = 16000


def _write(path: Path, wav: np.ndarray, sr: int = SR) -> str:
    sf.write(path, wav, sr, subtype="FLOAT")
    return str(path)


def _sine(seconds: float, amplitude: float, freq: float = 440.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# synthetic corpus


@pytest.mark.parametrize("seconds", [0.3, 1.234, 2.0])
def test_synthetic_clips_have_right_length_range_and_signal(seconds: float) -> None:
    rng = np.random.default_rng(0)
    for class_id in range(NUM_CLASSES):
        wav, label = synthesize_clip(rng, seconds, class_id=class_id)
        assert label == class_id
        assert wav.dtype == np.float32 and wav.shape == (int(round(seconds * SR)),)
        assert np.isfinite(wav).all()
        assert 0.1 < np.abs(wav).max() <= 1.0
        assert wav.std() > 1e-3


def test_synthesize_clip_draws_class_from_rng_and_rejects_bad_args() -> None:
    labels = {synthesize_clip(np.random.default_rng(i), 0.2)[1] for i in range(60)}
    assert labels == set(range(NUM_CLASSES))
    with pytest.raises(ConfigError):
        synthesize_clip(np.random.default_rng(0), 0.0)
    with pytest.raises(ConfigError):
        synthesize_clip(np.random.default_rng(0), 1.0, class_id=NUM_CLASSES)


def test_synthetic_dataset_is_deterministic_per_seed_and_index() -> None:
    ds = SyntheticAudioDataset(length=12, clip_seconds=1.0, seed=3)
    again = SyntheticAudioDataset(length=12, clip_seconds=1.0, seed=3)
    other_seed = SyntheticAudioDataset(length=12, clip_seconds=1.0, seed=4)
    item = ds[5]
    assert torch.equal(item["wav"], again[5]["wav"])
    assert torch.equal(item["wav"], ds[(5, 77)]["wav"])  # the batch index does not change the clip
    assert ds[(5, 77)]["batch_index"] == 77
    assert not torch.equal(item["wav"], ds[6]["wav"])
    assert not torch.equal(item["wav"], other_seed[5]["wav"])
    assert item["wav"].dtype == torch.float32 and item["length"] == SR == item["wav"].shape[0]
    assert [ds[i]["label"] for i in range(12)] == [i % NUM_CLASSES for i in range(12)]
    with pytest.raises(IndexError):
        ds[12]


def _clip_features(wav: np.ndarray) -> np.ndarray:
    """Frequency-invariant shape statistics of the loudest frames: spectral peakiness, number of spectral
    peaks, pitch glide, spectral flux and loudness modulation."""
    frames = np.lib.stride_tricks.sliding_window_view(wav, 400)[::160] * np.hanning(400)
    logspec = 10 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10)
    top = logspec.max(axis=1)
    loud = top >= np.quantile(top, 0.75)
    rel = logspec[loud] - top[loud, None]
    peakiness = np.sort(rel, axis=1)[:, ::-1][:, [2, 5, 10, 20, 50]].mean(0)
    is_peak = (rel[:, 1:-1] > rel[:, :-2]) & (rel[:, 1:-1] >= rel[:, 2:]) & (rel[:, 1:-1] > -20)
    pitch = np.log2(logspec.argmax(axis=1) + 1.0)
    moves = np.abs(pitch[5:] - pitch[:-5])[loud[5:] & loud[:-5]]
    glide = np.mean((moves > 0.03) & (moves <= 0.6)) if moves.size else 0.0
    flux = np.abs(np.diff(logspec, axis=0)).mean()
    return np.concatenate([peakiness, [np.log1p(is_peak.sum(1).mean()), glide, flux, np.std(np.diff(top))]])


def test_synthetic_classes_are_separable_by_a_nearest_centroid_classifier() -> None:
    per_class = 10
    feats, labels = [], []
    for class_id in range(NUM_CLASSES):
        for i in range(2 * per_class):
            wav, _ = synthesize_clip(np.random.default_rng((11, class_id, i)), 1.0, class_id=class_id)
            feats.append(_clip_features(wav))
            labels.append(class_id)
    x, y = np.array(feats), np.array(labels)
    train = np.tile(np.arange(2 * per_class) < per_class, NUM_CLASSES)
    z = (x - x[train].mean(0)) / (x[train].std(0) + 1e-9)
    centroids = np.stack([z[train & (y == c)].mean(0) for c in range(NUM_CLASSES)])
    predicted = np.argmin(((z[~train, None] - centroids) ** 2).sum(-1), axis=1)
    accuracy = float((predicted == y[~train]).mean())
    assert accuracy >= 3.0 / NUM_CLASSES, f"accuracy {accuracy:.2f}, chance {1 / NUM_CLASSES:.2f}"


# ----------------------------------------------------------------------------------------------------------
# AudioClipDataset


def test_long_files_are_cropped_and_short_files_padded(tmp_path: Path) -> None:
    long_wav = np.random.default_rng(0).uniform(-0.5, 0.5, 3 * SR).astype(np.float32)
    short_wav = _sine(0.5, 0.5)
    files = [_write(tmp_path / "long.wav", long_wav), _write(tmp_path / "short.wav", short_wav)]
    ds = AudioClipDataset(files, clip_seconds=1.0, gain_db=None)

    item = ds[(0, 3)]
    assert item["wav"].shape == (SR,) and item["length"] == SR and item["wav"].dtype == torch.float32
    start = int(np.flatnonzero(long_wav == item["wav"][0].item())[0])
    np.testing.assert_array_equal(item["wav"].numpy(), long_wav[start:start + SR])

    item = ds[1]
    assert item["wav"].shape == (SR,) and item["length"] == SR // 2
    np.testing.assert_allclose(item["wav"][: SR // 2].numpy(), short_wav, atol=1e-7)
    assert torch.all(item["wav"][SR // 2:] == 0)
    assert item["path"] == files[1] and item["skipped"] == []

    head = AudioClipDataset(files, clip_seconds=1.0, gain_db=None, random_crop=False)[(0, 3)]
    np.testing.assert_array_equal(head["wav"].numpy(), long_wav[:SR])


def test_duration_sampling_gives_long_files_one_item_per_clip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    files = [_write(tmp_path / "a.wav", rng.uniform(-0.5, 0.5, int(3.02 * SR)).astype(np.float32)),
             _write(tmp_path / "b.wav", _sine(0.4, 0.5)),
             _write(tmp_path / "c.wav", _sine(2.0, 0.5, sr=8000), sr=8000)]
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    files.append(str(tmp_path / "broken.wav"))
    per_file = AudioClipDataset(files, clip_seconds=1.0, gain_db=None)
    ds = AudioClipDataset(files, clip_seconds=1.0, gain_db=None, sampling="duration")
    assert len(per_file) == 4
    # 3.02 s -> 3 items (rounded, not 4), 0.4 s -> 1, 2 s at 8 kHz -> 2, unreadable header -> 1.
    assert len(ds) == 3 + 1 + 2 + 1
    assert [ds[i]["path"] for i in range(6)] == [files[0]] * 3 + [files[1]] + [files[2]] * 2
    # Each item of a long file is its own random crop.
    crops = {ds[(i, 0)]["wav"][:8].numpy().tobytes() for i in range(3)}
    assert len(crops) == 3
    # The unreadable file is skipped as with per-file sampling (its neighbour, in list order, is used).
    assert ds[6]["path"] == files[0] and ds[6]["skipped"] == [files[3]]
    with pytest.raises(IndexError):
        ds[7]
    with pytest.raises(ConfigError, match="sampling"):
        AudioClipDataset(files, clip_seconds=1.0, sampling="seconds")
    with pytest.raises(ConfigError, match="folder source"):
        DataConfig(sampling="duration")  # the synthetic corpus has no file durations


@pytest.mark.parametrize("file_sr", [44100, 8000, SR])
def test_long_files_decode_only_the_crop_and_match_a_full_decode(tmp_path: Path, file_sr: int) -> None:
    from ajepa.features.audio import read_window, resampled_length

    wav = np.random.default_rng(1).uniform(-0.5, 0.5, int(4.3 * file_sr)).astype(np.float32)
    path = _write(tmp_path / "long.wav", wav, sr=file_sr)
    full = load_audio(path, target_sr=SR)
    assert resampled_length(len(wav), file_sr, SR) == full.shape[0]
    for start in (0, 1, 12345, full.shape[0] - SR):  # the file's first and last samples included
        with sf.SoundFile(path) as audio:
            window = read_window(audio, start, SR, SR)
        torch.testing.assert_close(window, full[start:start + SR], atol=1e-5, rtol=0)
    # The dataset's crops are those of the fully decoded file.
    ds = AudioClipDataset([path], clip_seconds=1.0, gain_db=None)
    for batch_index in range(3):
        item = ds[(0, batch_index)]
        start = int(np.random.default_rng((0, 0, batch_index)).integers(0, full.shape[0] - SR + 1))
        torch.testing.assert_close(item["wav"], full[start:start + SR], atol=1e-5, rtol=0)
        assert item["length"] == SR
        # The public pair the data-loading benchmark compares: same offset from the same generator state.
        clip, length = ds.read_clip(path, np.random.default_rng(batch_index))
        reference, _ = ds.crop(full, np.random.default_rng(batch_index))
        torch.testing.assert_close(clip, reference, atol=1e-5, rtol=0)
        assert length == SR


def test_memory_cache_gives_the_same_clips_and_respects_its_budget(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    paths = [_write(tmp_path / "long.wav", rng.uniform(-0.5, 0.5, 4 * SR).astype(np.float32)),
             _write(tmp_path / "short.wav", rng.uniform(-0.5, 0.5, SR // 2).astype(np.float32)),
             _write(tmp_path / "8k.wav", rng.uniform(-0.5, 0.5, 24000).astype(np.float32), sr=8000)]
    plain = AudioClipDataset(paths, clip_seconds=1.0, seed=4)
    cached = AudioClipDataset(paths, clip_seconds=1.0, seed=4, cache_mb=1)
    for rounds in range(2):  # the first round fills the cache, the second reads from it
        for index in range(3):
            a, b = plain[(index, rounds)], cached[(index, rounds)]
            torch.testing.assert_close(b["wav"], a["wav"], atol=1e-5, rtol=0)
            assert a["length"] == b["length"]
    assert len(cached._cache) == 3 and cached._cached_bytes == 4 * (4 * SR + SR // 2 + 3 * SR)
    # Clips are copies: the gain of one item never reaches the cached waveform.
    before = cached._cache[paths[0]].clone()
    cached[(0, 7)]
    assert torch.equal(cached._cache[paths[0]], before)
    # A budget smaller than a file keeps that file out of the cache and still serves it.
    small = AudioClipDataset(paths, clip_seconds=1.0, seed=4, cache_mb=3 * SR * 4 / 2**20)
    for index in range(3):
        torch.testing.assert_close(small[index]["wav"], plain[index]["wav"], atol=1e-5, rtol=0)
    assert paths[0] not in small._cache and small._cached_bytes <= 3 * SR * 4
    with pytest.raises(ConfigError, match="cache_mb"):
        AudioClipDataset(paths, clip_seconds=1.0, cache_mb=-1)
    with pytest.raises(ConfigError, match="cache_mb"):
        DataConfig(cache_mb=64)  # the synthetic corpus has no files to cache


def test_files_are_resampled_to_the_dataset_rate(tmp_path: Path) -> None:
    path = _write(tmp_path / "8k.wav", _sine(1.0, 0.5, sr=8000), sr=8000)
    item = AudioClipDataset([path], clip_seconds=2.0, gain_db=None)[0]
    assert item["wav"].shape == (2 * SR,) and item["length"] == SR


def test_several_crops_per_item_come_from_one_file_at_different_offsets(tmp_path: Path) -> None:
    ramp = np.linspace(-0.5, 0.5, 5 * SR, dtype=np.float32)  # every offset gives a different clip
    path = _write(tmp_path / "long.wav", ramp)
    ds = AudioClipDataset([path], clip_seconds=1.0, crops=3, gain_db=None)
    item = ds[(0, 7)]
    assert item["wav"].shape == (3, SR) and item["length"] == [SR, SR, SR]
    assert len({float(c[0]) for c in item["wav"]}) == 3  # three different offsets into the one ramp
    assert torch.equal(ds[(0, 7)]["wav"], item["wav"])  # a pure function of (seed, index, batch_index)
    batch = collate_clips([item, ds[(0, 7)]])
    assert batch["wav"].shape == (6, SR) and batch["lengths"].tolist() == [SR] * 6
    assert batch["paths"] == [path] * 6
    short = AudioClipDataset([_write(tmp_path / "short.wav", ramp[: SR // 2])], clip_seconds=1.0, crops=2)
    assert short[0]["length"] == [SR // 2, SR // 2]
    with pytest.raises(ConfigError, match="crops"):
        AudioClipDataset([path], clip_seconds=1.0, crops=0)


def test_crops_and_gains_are_deterministic_per_seed_index_and_batch(tmp_path: Path) -> None:
    source = _sine(10.0, 0.25, freq=3.0) + np.linspace(0, 0.01, 10 * SR, dtype=np.float32)
    ds = AudioClipDataset([_write(tmp_path / "a.wav", source)], clip_seconds=0.5, seed=1, gain_db=(-6, 6))
    same = AudioClipDataset([str(tmp_path / "a.wav")], clip_seconds=0.5, seed=1, gain_db=(-6, 6))
    assert torch.equal(ds[(0, 5)]["wav"], same[(0, 5)]["wav"])
    assert torch.equal(ds[0]["wav"], ds[(0, 0)]["wav"])
    clips = [ds[(0, b)]["wav"] for b in range(6)]
    assert any(not torch.equal(clips[0], c) for c in clips[1:])
    other_seed = AudioClipDataset([str(tmp_path / "a.wav")], clip_seconds=0.5, seed=2, gain_db=(-6, 6))
    assert not torch.equal(ds[(0, 5)]["wav"], other_seed[(0, 5)]["wav"])


def test_gain_stays_in_range_and_never_clips(tmp_path: Path) -> None:
    quiet = _write(tmp_path / "quiet.wav", _sine(1.0, 0.25))
    loud = _write(tmp_path / "loud.wav", _sine(1.0, 0.9))
    ds = AudioClipDataset([quiet, loud], clip_seconds=1.0, gain_db=(-6.0, 6.0))
    quiet_gains = [float(ds[(0, b)]["wav"].abs().max()) / 0.25 for b in range(20)]
    assert min(quiet_gains) >= 10 ** (-6 / 20) - 1e-3 and max(quiet_gains) <= 10 ** (6 / 20) + 1e-3
    assert max(quiet_gains) - min(quiet_gains) > 0.3  # the gain does vary
    assert all(float(ds[(1, b)]["wav"].abs().max()) <= 1.0 + 1e-6 for b in range(20))


def _folder_with_bad_files(root: Path, n_good: int) -> tuple[list[str], set[str]]:
    root.mkdir()
    good = [_write(root / f"good{i}.wav", _sine(0.4 + 0.1 * i, 0.5)) for i in range(n_good)]
    corrupt = root / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(40)))
    empty = root / "empty.wav"
    empty.touch()
    header_only = root / "header_only.wav"
    sf.write(header_only, np.zeros(0, np.float32), SR)
    return good, {str(corrupt), str(empty), str(header_only)}


def test_loader_skips_and_counts_unreadable_files_and_keeps_batches_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = _folder_with_bad_files(tmp_path / "audio", n_good=5)
    ds = AudioClipDataset(tmp_path / "audio", clip_seconds=0.5)
    assert len(ds) == 8
    sampler = BatchIndexSampler(len(ds), batch_size=4, seed=0)
    loader = make_loader(ds, sampler, collate_fn=collate_clips, num_workers=0)
    skipped: set[str] = set()
    with caplog.at_level(logging.WARNING, logger="ajepa.data.dataset"):
        for batch in islice(loader, 2 * sampler.batches_per_epoch):  # two epochs: every index is visited
            assert batch["wav"].shape == (4, SR // 2)
            assert set(batch["paths"]) <= set(good)
            skipped.update(batch["skipped"])
    assert skipped == bad
    assert set(ds.failures) == bad and all(ds.failures.values())
    for path in bad:  # one warning per bad file, even though each was met more than once
        assert sum(path in r.getMessage() for r in caplog.records) == 1


def test_worker_count_does_not_change_batches(tmp_path: Path) -> None:
    _folder_with_bad_files(tmp_path / "audio", n_good=5)
    ds = AudioClipDataset(tmp_path / "audio", clip_seconds=0.5, seed=4)
    batches = {}
    for workers in (0, 1):
        sampler = BatchIndexSampler(len(ds), batch_size=4, seed=2, start_batch=1)
        loader = make_loader(ds, sampler, collate_fn=None, num_workers=workers)
        batches[workers] = list(islice(loader, 3))
    for a, b in zip(batches[0], batches[1]):
        assert torch.equal(a["wav"], b["wav"]) and a["paths"] == b["paths"]
        assert a["batch_index"] == b["batch_index"] and a["skipped"] == b["skipped"]
    assert [b["batch_index"] for b in batches[1]] == [1, 2, 3]


def test_all_unreadable_or_no_files_raise(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    root.mkdir()
    for i in range(3):
        (root / f"bad{i}.wav").write_bytes(b"not audio at all")
    ds = AudioClipDataset(root, clip_seconds=0.5)
    with pytest.raises(AudioInputError, match="unreadable"):
        ds[1]
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(AudioInputError, match="empty_folder"):
        AudioClipDataset(empty, clip_seconds=0.5)
    with pytest.raises(AudioInputError):
        AudioClipDataset([], clip_seconds=0.5)


def test_csv_and_jsonl_manifests(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    names = [Path(_write(folder / f"{i}.wav", SyntheticAudioDataset(3, 0.3, seed=0)[i]["wav"].numpy())).name
             for i in range(3)]
    csv_path = folder / "labels.csv"
    csv_path.write_text("path,label\n" + "".join(f"{n},{i}\n" for i, n in enumerate(names)))
    from_csv = AudioClipDataset(csv_path, clip_seconds=0.3)
    assert len(from_csv) == 3 and from_csv[2]["length"] == int(0.3 * SR)

    jsonl = tmp_path / "corpus" / "manifest.jsonl"
    jsonl.write_text("".join(json.dumps({"path": Path(f).name}) + "\n" for f in from_csv.files[:2]))
    from_jsonl = AudioClipDataset(jsonl, clip_seconds=0.3)
    assert from_jsonl.files == from_csv.files[:2]
    assert torch.equal(from_jsonl[(1, 4)]["wav"], from_csv[(1, 4)]["wav"])


def test_real_audio_folder_smoke(shared_data: Path) -> None:
    data = shared_data / "fsdd" / "recordings"  # 8 kHz clips shorter than 1 s: resampling and padding
    if not data.is_dir():
        pytest.skip(f"FSDD not found at {data}")
    files = list_audio_files(data)[:4]
    item = AudioClipDataset(files, clip_seconds=1.0)[(2, 0)]
    assert item["wav"].shape == (SR,) and 0 < item["length"] <= SR
    assert torch.isfinite(item["wav"]).all() and item["wav"][: item["length"]].abs().max() > 0


# ----------------------------------------------------------------------------------------------------------
# BatchIndexSampler


def _take(sampler: BatchIndexSampler, n: int) -> list[list[tuple[int, int]]]:
    return list(islice(iter(sampler), n))


def test_sampler_permutes_each_epoch_and_numbers_batches_consecutively() -> None:
    sampler = BatchIndexSampler(dataset_len=10, batch_size=3, seed=5)
    assert sampler.batches_per_epoch == 3
    batches = _take(sampler, 9)
    assert [b[0][1] for b in batches] == list(range(9))
    assert all(len(b) == 3 and len({j for _, j in b}) == 1 for b in batches)
    epochs = [[i for b in batches[e * 3:(e + 1) * 3] for i, _ in b] for e in range(3)]
    for order in epochs:
        assert len(set(order)) == 9 and set(order) <= set(range(10))
    assert epochs[0] != epochs[1] != epochs[2]
    assert _take(BatchIndexSampler(10, 3, seed=5), 9) == batches
    assert _take(BatchIndexSampler(10, 3, seed=6), 9) != batches
    assert sampler.position(7) == (2, 1)


def test_sampler_resume_matches_the_uninterrupted_run() -> None:
    full = _take(BatchIndexSampler(dataset_len=11, batch_size=2, seed=1), 17)
    for start in (1, 5, 10):  # mid-epoch and exactly on an epoch boundary
        assert _take(BatchIndexSampler(11, 2, seed=1, start_batch=start), 17 - start) == full[start:]


def test_sampler_rank_slices_are_disjoint_and_cover_each_global_batch() -> None:
    world, per_rank, n = 3, 2, 20
    per_rank_batches = [_take(BatchIndexSampler(n, per_rank, seed=7, rank=r, world_size=world), 7)
                        for r in range(world)]
    single = BatchIndexSampler(n, per_rank * world, seed=7)
    sharded = BatchIndexSampler(n, per_rank, seed=7, world_size=world)
    assert single.batches_per_epoch == sharded.batches_per_epoch == 3
    for step, global_batch in enumerate(_take(single, 7)):
        slices = [per_rank_batches[r][step] for r in range(world)]
        assert {j for s in slices for _, j in s} == {step}
        indices = [i for s in slices for i, _ in s]
        assert len(set(indices)) == per_rank * world
        assert indices == [i for i, _ in global_batch]


def test_sampler_without_drop_last_keeps_batches_full_and_covers_the_data() -> None:
    sampler = BatchIndexSampler(dataset_len=10, batch_size=4, seed=0, drop_last=False)
    assert sampler.batches_per_epoch == 3
    epoch = _take(sampler, 3)
    assert all(len(b) == 4 for b in epoch)
    assert {i for b in epoch for i, _ in b} == set(range(10))


def test_sampler_rejects_bad_configurations() -> None:
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        BatchIndexSampler(dataset_len=7, batch_size=4, seed=0, world_size=2)
    with pytest.raises(ConfigError):
        BatchIndexSampler(dataset_len=7, batch_size=2, seed=0, rank=2, world_size=2)
    with pytest.raises(ConfigError):
        BatchIndexSampler(dataset_len=7, batch_size=0, seed=0)
