"""Shard writer (ajepa.data.shard) and sharded stream reader (ajepa.data.streaming)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from ajepa.data import collate_clips
from ajepa.data import shard as shard_mod
from ajepa.data import streaming
from ajepa.data.shard import main, read_index, verify_shards, write_shards
from ajepa.training.loader import assign_batch_index
from ajepa.data.streaming import ShardedAudioStream, assign_shards
from ajepa.data.tar_samples import iter_tar_samples
from ajepa.errors import ConfigError


def _tone(rng: np.random.Generator, seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    n = int(seconds * sr)
    wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * np.arange(n) / sr) + 0.05 * rng.standard_normal(n)
    return np.stack([wav] * channels, axis=1).astype(np.float32) if channels > 1 else wav.astype(np.float32)


@pytest.fixture()
def corpus(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """Nested folder of WAV/FLAC/OGG files (plus a corrupt and an empty one) and a labels CSV."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    specs = {  # relative path -> (seconds, sample rate, format options)
        "a/one.wav": (0.3, 16000, {"subtype": "PCM_16"}),
        "a/b/two.flac": (0.2, 8000, {}),
        "a/b/three.ogg": (0.4, 22050, {"format": "OGG", "subtype": "VORBIS"}),
        "c/four.wav": (0.05, 16000, {"subtype": "FLOAT"}),
        "c/five.with.dots.wav": (0.25, 44100, {"subtype": "PCM_24"}),
        "c/d/six.flac": (0.3, 16000, {}),
        "seven.wav": (0.3, 16000, {}),
    }
    for rel, (seconds, sr, opts) in specs.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _tone(rng, seconds, sr, channels=2 if "three" in rel else 1), sr, **opts)
    (src / "c" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    (src / "c" / "empty.flac").write_bytes(b"")
    labels = {rel: f"class_{i % 3}" for i, rel in enumerate(sorted(specs)) if rel != "seven.wav"}
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in labels.items()))
    return src, labels_csv, labels


def test_round_trip_bytes_labels_and_index(corpus, tmp_path: Path) -> None:
    src, labels_csv, labels = corpus
    out = tmp_path / "shards"
    report = write_shards(src, out, shard_size=3, labels=labels_csv, progress=False)

    assert sorted(Path(s["path"]).name for s in report.skipped) == ["broken.wav", "empty.flac"]
    assert report.unlabelled == 1 and report.num_samples == 7
    index = read_index(out)
    assert [s["count"] for s in index["shards"]] == [3, 3, 1]
    assert verify_shards(out) == []
    for entry in index["shards"]:
        data = (out / entry["name"]).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]

    seen = {}
    for entry in index["shards"]:
        for sample in iter_tar_samples(out / entry["name"]):
            assert "." not in sample.key and "/" not in sample.key
            rel = sample.meta["path"]
            original = (src / rel).read_bytes()
            assert sample.audio == original, rel
            assert sample.meta["sha256"] == hashlib.sha256(original).hexdigest()
            assert sample.ext == Path(rel).suffix.lstrip(".")
            assert sample.meta["label"] == labels.get(rel)
            seen[sample.key] = rel
    good = {p.relative_to(src).as_posix() for p in src.rglob("*.*") if p.name not in ("broken.wav", "empty.flac")}
    assert sorted(seen.values()) == sorted(good)
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


def test_tampered_shard_is_detected(corpus, tmp_path: Path) -> None:
    src, _, _ = corpus
    out = tmp_path / "shards"
    write_shards(src, out, shard_size=4)
    target = out / "shard-000001.tar"
    data = bytearray(target.read_bytes())
    data[700] ^= 0xFF
    target.write_bytes(bytes(data))
    problems = verify_shards(out)
    assert len(problems) == 1 and "shard-000001.tar" in problems[0]
    assert main([str(out), "--verify"]) == 1


def test_output_is_reproducible_and_seeded_shuffle_permutes(corpus, tmp_path: Path) -> None:
    src, _, _ = corpus
    first = write_shards(src, tmp_path / "a", shard_size=2)
    second = write_shards(src, tmp_path / "b", shard_size=2)
    assert [s.sha256 for s in first.shards] == [s.sha256 for s in second.shards]

    def keys(folder: Path) -> list[str]:
        return [s.key for e in read_index(folder)["shards"] for s in iter_tar_samples(folder / e["name"])]

    write_shards(src, tmp_path / "s1", shard_size=2, shuffle_seed=1)
    write_shards(src, tmp_path / "s1b", shard_size=2, shuffle_seed=1)
    write_shards(src, tmp_path / "s2", shard_size=2, shuffle_seed=2)
    assert keys(tmp_path / "s1") == keys(tmp_path / "s1b")
    assert keys(tmp_path / "s1") != keys(tmp_path / "a") != keys(tmp_path / "s2")
    assert sorted(keys(tmp_path / "s1")) == sorted(keys(tmp_path / "a"))


def test_max_bytes_limits_shards(corpus, tmp_path: Path) -> None:
    src, _, _ = corpus
    out = tmp_path / "shards"
    limit = 30_000
    report = write_shards(src, out, shard_size=1000, max_bytes=limit)
    assert len(report.shards) > 1 and sum(s.count for s in report.shards) == 7
    for s in report.shards:
        # Only a single oversized file may exceed the limit (tar end-of-archive padding aside).
        assert s.bytes <= limit + 10240 or s.count == 1


def test_existing_output_needs_overwrite_and_failed_shard_is_not_published(corpus, tmp_path: Path,
                                                                          monkeypatch) -> None:
    src, _, _ = corpus
    out = tmp_path / "shards"
    write_shards(src, out, shard_size=1)
    assert len(list(out.glob("shard-*.tar"))) == 7
    with pytest.raises(ConfigError, match="overwrite"):
        write_shards(src, out, shard_size=3)
    write_shards(src, out, shard_size=3, overwrite=True)
    assert sorted(p.name for p in out.glob("shard-*.tar")) == ["shard-000000.tar", "shard-000001.tar",
                                                               "shard-000002.tar"]
    assert verify_shards(out) == []

    calls = {"n": 0}
    real_add = shard_mod._add_member

    def failing_add(tar, name, data):
        calls["n"] += 1
        if calls["n"] == 9:  # inside the second shard (2 members per sample, 3 samples per shard)
            raise OSError("disk full")
        real_add(tar, name, data)

    monkeypatch.setattr(shard_mod, "_add_member", failing_add)
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError, match="disk full"):
        write_shards(src, fresh, shard_size=3)
    assert sorted(p.name for p in fresh.iterdir()) == ["shard-000000.tar"]  # no partial shard, no temp, no index


def test_cli_writes_shards(corpus, tmp_path: Path, capsys) -> None:
    src, labels_csv, _ = corpus
    out = tmp_path / "cli"
    assert main([str(src), "--out", str(out), "--shard-size", "4", "--labels", str(labels_csv), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "wrote 7 clips in 2 shards" in captured.out and "broken.wav" in captured.err
    assert main([str(out), "--verify"]) == 0
    assert main([str(src), "--out", str(out)]) == 2  # refuses to overwrite silently


def test_assign_shards_disjoint_and_complete() -> None:
    for num_shards, consumers in [(8, 4), (10, 3), (5, 5)]:
        for epoch in range(3):
            parts = [assign_shards(num_shards, 7, epoch, c, consumers) for c in range(consumers)]
            flat = [i for part in parts for i in part]
            assert sorted(flat) == list(range(num_shards))
    assert assign_shards(20, 7, 0, 0, 1) != assign_shards(20, 7, 1, 0, 1)  # the order changes per epoch


def _write_tar(path: Path, samples: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in samples:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _wav_bytes(rng: np.random.Generator, seconds: float, sr: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, _tone(rng, seconds, sr), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture()
def shard_set(tmp_path: Path) -> Path:
    """8 shards x 3 short WAV clips, written through the CLI path so index.json holds the counts."""
    rng = np.random.default_rng(1)
    src = tmp_path / "clips"
    src.mkdir()
    for i in range(24):
        (src / f"clip{i:02d}.wav").write_bytes(_wav_bytes(rng, rng.uniform(0.05, 0.3)))
    write_shards(src, tmp_path / "shards", shard_size=3)
    return tmp_path / "shards"


def _keys_by_consumer(stream: ShardedAudioStream, num_workers: int, monkeypatch) -> list[list[str]]:
    keys = []
    for worker in range(num_workers):
        monkeypatch.setattr(streaming, "worker_position", lambda w=worker: (w, num_workers))
        keys.append([item["key"] for item in stream])
    return keys


@pytest.mark.parametrize("split_shards", [8, 3])
def test_ranks_and_workers_read_disjoint_complete_epochs(tmp_path: Path, monkeypatch, split_shards: int) -> None:
    rng = np.random.default_rng(2)
    src = tmp_path / "clips"
    src.mkdir()
    for i in range(24):
        (src / f"clip{i:02d}.wav").write_bytes(_wav_bytes(rng, 0.05))
    out = tmp_path / "shards"
    write_shards(src, out, shard_size=24 // split_shards)   # 8 shards (per-shard split) or 3 (per-sample)
    parts = []
    for rank in range(2):
        stream = ShardedAudioStream(out, 0.05, 8000, seed=3, rank=rank, world_size=2, epochs=1, shuffle_buffer=4)
        parts += _keys_by_consumer(stream, 2, monkeypatch)
    flat = [k for part in parts for k in part]
    assert [len(p) for p in parts] == [6, 6, 6, 6]
    assert len(set(flat)) == 24  # disjoint and complete: every clip exactly once over the epoch
    if split_shards == 3:
        with pytest.raises(ConfigError, match="3 shards for 4 consumers"):
            stream = ShardedAudioStream(out, 0.05, 8000, rank=0, world_size=2, epochs=1, split="shard")
            _keys_by_consumer(stream, 2, monkeypatch)


def test_unequal_shares_are_equalised(shard_set: Path, monkeypatch) -> None:
    # 24 clips over 5 consumers: every consumer yields 24 // 5 = 4 clips (batch 2), some wrap, some drop.
    stream = ShardedAudioStream(shard_set, 0.05, 8000, rank=0, world_size=5, epochs=2, batch_size=2)
    assert stream.samples_per_epoch(1) == 4
    for rank in range(5):
        stream.rank = rank
        assert len(list(stream)) == 8
    with pytest.raises(ConfigError, match="cannot fill one batch"):
        ShardedAudioStream(shard_set, 0.05, 8000, world_size=5, batch_size=6)


def test_shuffle_buffer_is_seeded(shard_set: Path) -> None:
    def order(seed: int, buffer: int) -> list[str]:
        return [x["key"] for x in ShardedAudioStream(shard_set, 0.05, 8000, seed=seed, shuffle_buffer=buffer,
                                                     epochs=2)]

    assert order(5, 6) == order(5, 6)
    assert order(5, 6) != order(6, 6)
    assert order(5, 6) != order(5, 1)  # the buffer does reorder beyond the shard order
    assert sorted(order(5, 6)[:24]) == sorted(order(5, 1)[:24])  # ...but only reorders
    assert order(5, 6)[:24] != order(5, 6)[24:]  # epochs differ


def test_clips_are_cropped_padded_and_resampled(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    out = tmp_path / "mixed"
    out.mkdir()
    buf = io.BytesIO()
    sf.write(buf, _tone(rng, 1.0, 22050, channels=2), 22050, format="FLAC")
    _write_tar(out / "s.tar", [("long.flac", buf.getvalue()), ("long.json", b'{"label": "x"}'),
                               ("short.wav", _wav_bytes(rng, 0.1, 16000)),
                               ("bad.wav", b"RIFF garbage")])
    stream = ShardedAudioStream(out / "s.tar", 0.5, 16000, seed=0, epochs=1, shuffle_buffer=1, with_meta=True)
    items = list(stream)
    assert len(items) == 3 and all(item["wav"].shape == (8000,) for item in items)
    by_key = [item["key"] for item in items]
    assert by_key[:2] == ["long", "short"] and by_key[2] == "short"  # the bad sample is replaced, not dropped
    assert "bad" in stream.failures and items[2]["skipped"] == ["bad"] and items[1]["skipped"] == []
    long_item, short_item = items[0], items[1]
    assert long_item["length"] == 8000 and long_item["meta"] == {"label": "x"}
    assert short_item["length"] == 1600 and torch.all(short_item["wav"][1600:] == 0)
    assert all(float(item["wav"].abs().max()) <= 1.0 for item in items)


def _collate(samples: list[dict]) -> dict:
    batch = collate_clips(samples)  # the trainer's collate: needs "path" and reads "skipped"
    batch["keys"] = [s["key"] for s in samples]
    return batch


def _batches(stream: ShardedAudioStream, num_workers: int, count: int, batch_size: int = 2) -> list[dict]:
    loader = DataLoader(stream, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=assign_batch_index(_collate, batch_size))
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == count:
            break
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_continues_the_uninterrupted_sequence(shard_set: Path, num_workers: int) -> None:
    def make() -> ShardedAudioStream:
        return ShardedAudioStream(shard_set, 0.1, 8000, seed=9, batch_size=2, shuffle_buffer=5)

    per_epoch = make().batches_per_epoch(max(1, num_workers))
    total = per_epoch + 4  # crosses an epoch boundary
    full = _batches(make(), num_workers, total)
    assert [b["batch_index"] for b in full] == list(range(total))

    head_stream = make()
    cut = per_epoch - 3
    head = _batches(head_stream, num_workers, cut)
    # The batch count alone gives the position, and it must survive a plain-data checkpoint.
    state = json.loads(json.dumps(make().state_at(cut, num_workers)))
    resumed_stream = make()
    resumed_stream.load_state_dict(state)
    tail = _batches(resumed_stream, num_workers, total - cut)
    for a, b in zip(full, head + tail, strict=True):
        assert a["keys"] == b["keys"] and a["batch_index"] == b["batch_index"]
        assert torch.equal(a["wav"], b["wav"])

    other = ShardedAudioStream(shard_set, 0.1, 8000, seed=10, batch_size=2)
    with pytest.raises(ConfigError, match="other settings"):
        other.load_state_dict(state)


def test_a_truncated_shard_is_an_audio_input_error_naming_it(shard_set: Path) -> None:
    from ajepa.errors import AudioInputError

    import tarfile

    shard = sorted(shard_set.glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        last = [m for m in tar.getmembers() if m.isfile()][-1]
    data = shard.read_bytes()
    shard.write_bytes(data[: last.offset_data + last.size // 2])  # cut in the middle of the last member
    with pytest.raises(AudioInputError, match=shard.name):
        list(iter_tar_samples(shard))
