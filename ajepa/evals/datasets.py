"""Readers for the evaluation data sets in their official layouts.

Each reader returns a :class:`ClipSet`: file paths, integer labels ``0..C-1``, class names, a group id per
clip (speaker or source recording: clips sharing a group must never be split between train and test),
and, where the data set defines them, predefined folds or an official train/validation/test split.

Layouts
-------
- ESC-50 (and ESC-10): ``audio/*.wav|ogg`` + ``meta/esc50.csv`` with columns
  ``filename,fold,target,category,esc10,src_file,take``.
- Speech Commands v0.02, full release: ``{word}/{speaker}_nohash_{n}.wav``, ``validation_list.txt``,
  ``testing_list.txt``, ``_background_noise_/*.wav``.
- Speech Commands v0.02, test-set archive: ``{label}/...wav`` for the 12 labels, ``_unknown_`` holding
  ``{word}_{speaker}_nohash_{n}.wav`` and ``_silence_`` holding ``{n}.wav``; no list files.
- FSDD: ``recordings/{digit}_{speaker}_{index}.wav``; its own split is index 0-4 test, 5-49 train.
- Arabic Speech Commands: ``dataset/{keyword}/{speaker}_NO_{nn}.(wav|ogg)`` and split lists ``train.csv``,
  ``val.csv`` (and ``test.csv`` in the full release) with columns ``file,class``; speakers are the first 8 digits
  of a file name and the splits are speaker-disjoint.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

__all__ = [
    "ClipSet",
    "read_esc50",
    "read_speech_commands",
    "read_fsdd",
    "read_arabic_speech_commands",
    "ARABIC_SPLITS",
    "grouped_folds",
    "SC_KNOWN_WORDS",
    "SC_UNKNOWN",
    "SC_SILENCE",
    "speech_commands_speaker",
]

SC_KNOWN_WORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SC_UNKNOWN = "_unknown_"
SC_SILENCE = "_silence_"
SC_BACKGROUND = "_background_noise_"
# Disjoint time regions of each background-noise file per split, so no noise audio is shared between them.
_SILENCE_REGIONS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}


@dataclass
class ClipSet:
    """A labelled list of audio files ready for probing."""

    name: str
    paths: list[str]
    labels: np.ndarray  # (N,) int64 in 0..C-1
    class_names: list[str]
    groups: np.ndarray  # (N,) str: speaker / source recording; never split across train and test
    folds: np.ndarray | None = None  # (N,) int64 predefined fold ids (ESC-50), else None
    split: np.ndarray | None = None  # (N,) str "train" | "validation" | "test" (official split), else None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def without_unreadable(self) -> ClipSet:
        """This set without the files whose audio header cannot be read (corrupt, empty, not audio), each named in
        ``notes``: one bad file is reported and left out rather than ending the evaluation."""
        bad = []
        for i, path in enumerate(self.paths):
            try:
                info = sf.info(path)
                ok = info.frames > 0 and info.samplerate > 0
            except Exception:  # libsndfile's many ways of saying "not audio"
                ok = False
            if not ok:
                bad.append(i)
        if not bad:
            return self
        keep = np.setdiff1d(np.arange(len(self.paths)), bad)
        log.warning("%s: %d unreadable file(s) left out, e.g. %s", self.name, len(bad), self.paths[bad[0]])

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        return replace(self, paths=[self.paths[i] for i in keep], labels=self.labels[keep], groups=self.groups[keep],
                       folds=take(self.folds), split=take(self.split),
                       notes=[*self.notes, f"{len(bad)} unreadable file(s) left out: "
                              + ", ".join(Path(self.paths[i]).name for i in bad[:10])
                              + (" ..." if len(bad) > 10 else "")])


def _missing_error(root: Path, missing: list[str], total: int, what: str) -> FileNotFoundError:
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    return FileNotFoundError(f"{len(missing)} of {total} {what} listed are missing under {root}: {shown}")


def read_esc50(root: str | os.PathLike, esc10: bool = False) -> ClipSet:
    """Read ESC-50 from its official layout; ``esc10=True`` keeps the ESC-10 rows.

    Labels are re-indexed to ``0..C-1`` in order of the original ``target`` ids; ``class_names`` are the
    ``category`` values. ``folds`` are the csv's folds (leave-one-fold-out is the protocol); ``groups``
    are ``src_file`` ids (the official folds already keep a source recording in one fold).
    Raises ``FileNotFoundError`` with the count of missing files when any listed clip is absent.
    """
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    if not meta.is_file():
        raise FileNotFoundError(
            f"ESC-50 metadata not found: {meta} (expected the official layout audio/, meta/esc50.csv)")
    with open(meta, newline="") as f:
        rows = list(csv.DictReader(f))
    required = {"filename", "fold", "target", "category", "esc10", "src_file"}
    if not rows or not required.issubset(rows[0]):
        raise ValueError(f"{meta} lacks the official columns {sorted(required)}")
    if esc10:
        rows = [r for r in rows if r["esc10"].strip().lower() == "true"]
        if not rows:
            raise ValueError(f"{meta}: no rows have esc10 == True")
    missing = [r["filename"] for r in rows if not (root / "audio" / r["filename"]).is_file()]
    if missing:
        raise _missing_error(root / "audio", missing, len(rows), "ESC-50 clips")
    targets = sorted({int(r["target"]) for r in rows})
    remap = {t: i for i, t in enumerate(targets)}
    names: dict[int, str] = {}
    for r in rows:
        name = names.setdefault(int(r["target"]), r["category"])
        if name != r["category"]:
            raise ValueError(f"{meta}: target {r['target']} has two categories ({name!r}, {r['category']!r})")
    return ClipSet(
        name="esc10" if esc10 else "esc50",
        paths=[str(root / "audio" / r["filename"]) for r in rows],
        labels=np.array([remap[int(r["target"])] for r in rows], dtype=np.int64),
        class_names=[names[t] for t in targets],
        groups=np.array([r["src_file"] for r in rows]),
        folds=np.array([int(r["fold"]) for r in rows], dtype=np.int64),
        notes=["official folds, leave-one-fold-out"],
    )


def speech_commands_speaker(path: str | os.PathLike) -> str:
    """Speaker id of a Speech Commands file: the part before ``_nohash_``, without a leading ``{word}_``.

    ``{speaker}_nohash_{n}.wav`` and ``_unknown_/{word}_{speaker}_nohash_{n}.wav`` both give ``speaker``.
    Raises ``ValueError`` for names without ``_nohash_`` (e.g. ``_silence_`` clips, which have no speaker).
    """
    stem = Path(path).stem
    if "_nohash_" not in stem:
        raise ValueError(f"not a Speech Commands speech file name (no '_nohash_'): {path}")
    # Words and hex speaker ids contain no underscore, so the speaker is the last '_'-separated part.
    return stem.split("_nohash_")[0].rsplit("_", 1)[-1]


def _wavs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())


def read_speech_commands(
    root: str | os.PathLike,
    task: str = "12",
    *,
    seed: int = 0,
    silence_dir: str | os.PathLike | None = None,
    silence_per_split: int | None = None,
) -> ClipSet:
    """Read Speech Commands v0.02 from the full release or the test-set archive layout.

    ``task="35"`` (full release only): every word is a class. ``task="12"``: the ten command words,
    ``_unknown_`` (every other word, all clips kept) and ``_silence_``.

    Full release: ``split`` follows ``validation_list.txt`` / ``testing_list.txt`` (everything else is
    train). For the 12-class task, ``_silence_`` clips are 1 s cuts of the ``_background_noise_`` files,
    written once as WAV files under ``silence_dir`` (default: a folder under the ajepa cache keyed by the
    data root and seed). Per split there are ``silence_per_split`` of them, by default as many as the
    mean number of clips of a command word in that split (the proportion of the official test archive).
    Cuts are drawn with ``numpy.random.default_rng(seed)`` round-robin over the noise files, each split
    from its own disjoint time region of every file (train 0-80 %, validation 80-90 %, test 90-100 %),
    so no noise audio is shared between splits. A silence clip's group is its (split, noise file).

    Test-set archive: no ``split``; groups are speakers, and every ``_silence_`` clip is its own group
    (the archive does not say which noise recording a clip came from). Use :func:`grouped_folds`.
    """
    root = Path(root)
    if task not in ("12", "35"):
        raise ValueError(f"task must be '12' or '35', got {task!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"Speech Commands folder not found: {root}")
    if (root / "testing_list.txt").is_file() and (root / "validation_list.txt").is_file():
        return _read_sc_full(root, task, seed, silence_dir, silence_per_split)
    if (root / SC_UNKNOWN).is_dir():
        if task == "35":
            raise ValueError(
                f"{root} is the 12-class test-set archive (no per-word folders for unknown words); "
                "the 35-class task needs the full release with validation_list.txt and testing_list.txt"
            )
        return _read_sc_test_archive(root)
    raise FileNotFoundError(
        f"{root} is neither the Speech Commands full release (validation_list.txt, testing_list.txt) "
        f"nor the test-set archive (a {SC_UNKNOWN}/ folder)"
    )


def _read_sc_test_archive(root: Path) -> ClipSet:
    order = list(SC_KNOWN_WORDS) + [SC_UNKNOWN, SC_SILENCE]
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    extra = [d for d in present if d not in order]
    if extra:
        raise ValueError(f"{root}: unexpected folders for the 12-class test archive: {extra}")
    class_names = [c for c in order if c in present]
    paths, labels, groups = [], [], []
    for i, c in enumerate(class_names):
        for p in _wavs(root / c):
            paths.append(str(p))
            labels.append(i)
            groups.append(f"{SC_SILENCE}/{p.stem}" if c == SC_SILENCE else speech_commands_speaker(p))
    if not paths:
        raise FileNotFoundError(f"no .wav files under {root}")
    return ClipSet(
        name="speech_commands_12",
        paths=paths,
        labels=np.array(labels, dtype=np.int64),
        class_names=class_names,
        groups=np.array(groups),
        notes=["test-set archive (no official lists): speaker-grouped k-fold; each _silence_ clip its own group"],
    )


def _read_list(path: Path) -> set[str]:
    return {line.strip().replace("\\", "/") for line in path.read_text().splitlines() if line.strip()}


def _read_sc_full(
    root: Path, task: str, seed: int, silence_dir: str | os.PathLike | None, silence_per_split: int | None
) -> ClipSet:
    val_list = _read_list(root / "validation_list.txt")
    test_list = _read_list(root / "testing_list.txt")
    words = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    entries = []  # (relative path, word)
    for w in words:
        entries += [(f"{w}/{p.name}", w) for p in _wavs(root / w)]
    if not entries:
        raise FileNotFoundError(f"no word folders with .wav files under {root}")
    present = {rel for rel, _ in entries}
    missing = sorted((val_list | test_list) - present)
    if missing:
        raise _missing_error(root, missing, len(val_list | test_list), "Speech Commands files in the list files")
    split = ["test" if rel in test_list else "validation" if rel in val_list else "train" for rel, _ in entries]
    paths = [str(root / rel) for rel, _ in entries]
    groups = [speech_commands_speaker(rel) for rel, _ in entries]
    if task == "35":
        class_names = words
        labels = [words.index(w) for _, w in entries]
        notes = [f"official split from validation_list.txt/testing_list.txt, {len(words)} words"]
        return ClipSet("speech_commands_35", paths, np.array(labels, dtype=np.int64), class_names,
                       np.array(groups), split=np.array(split), notes=notes)

    class_names = list(SC_KNOWN_WORDS) + [SC_UNKNOWN, SC_SILENCE]
    labels = [class_names.index(w) if w in SC_KNOWN_WORDS else class_names.index(SC_UNKNOWN) for _, w in entries]
    noise = _wavs(root / SC_BACKGROUND) if (root / SC_BACKGROUND).is_dir() else []
    if not noise:
        raise FileNotFoundError(f"the 12-class task needs {root / SC_BACKGROUND}/*.wav to cut _silence_ clips from")
    counts = {}
    for s in _SILENCE_REGIONS:
        n_known = sum(1 for (_, w), sp in zip(entries, split) if sp == s and w in SC_KNOWN_WORDS)
        counts[s] = silence_per_split if silence_per_split is not None else int(round(n_known / len(SC_KNOWN_WORDS)))
    out = Path(silence_dir) if silence_dir is not None else _default_silence_dir(root, seed, counts)
    sil = _cut_silence(noise, counts, out, seed)
    for s, p, g in sil:
        paths.append(p)
        labels.append(class_names.index(SC_SILENCE))
        groups.append(g)
        split.append(s)
    notes = [
        "official split from validation_list.txt/testing_list.txt",
        "_unknown_ = all other words (all clips kept)",
        f"_silence_ = 1 s cuts of _background_noise_ (seed {seed}): "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + "; per-split disjoint time regions of each noise file",
    ]
    return ClipSet("speech_commands_12", paths, np.array(labels, dtype=np.int64), class_names,
                   np.array(groups), split=np.array(split), notes=notes)


def _default_silence_dir(root: Path, seed: int, counts: dict[str, int]) -> Path:
    from ajepa.evals.cache import default_cache_root

    key = json.dumps({"root": str(root.resolve()), "seed": seed, "counts": counts, "v": 1}, sort_keys=True)
    return default_cache_root() / "speech_commands_silence" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _cut_silence(noise: list[Path], counts: dict[str, int], out: Path, seed: int) -> list[tuple[str, str, str]]:
    """Write the 1 s silence cuts (once; existing files are reused so their mtimes stay stable)."""
    import soundfile as sf

    audio = []
    for p in noise:
        data, sr = sf.read(p, dtype="int16", always_2d=True)
        audio.append((p, data[:, 0], sr))
    rng = np.random.default_rng(seed)
    result = []
    for s, (lo, hi) in _SILENCE_REGIONS.items():
        usable = [(p, x, sr) for p, x, sr in audio if int(hi * len(x)) - int(lo * len(x)) >= sr]
        if counts[s] and not usable:
            raise ValueError(f"background-noise files are too short to cut 1 s {s} clips from their {s} region")
        (out / s).mkdir(parents=True, exist_ok=True)
        for i in range(counts[s]):
            p, x, sr = usable[i % len(usable)]
            start = int(rng.integers(int(lo * len(x)), int(hi * len(x)) - sr + 1))
            dest = out / s / f"{i:05d}_{p.stem}_{start}.wav"
            if not dest.exists():
                tmp = dest.with_name(dest.name + ".tmp")
                sf.write(tmp, x[start : start + sr], sr, subtype="PCM_16", format="WAV")
                os.replace(tmp, dest)
            result.append((s, str(dest), f"{SC_SILENCE}:{s}:{p.stem}"))
    return result


_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def read_fsdd(root: str | os.PathLike) -> ClipSet:
    """Read the Free Spoken Digit Dataset (``root`` is the repository folder or its ``recordings/``).

    ``groups`` are speakers (use :func:`grouped_folds`); ``split`` is the data set's own split
    (index 0-4 test, 5-49 train; it shares speakers between train and test).
    """
    root = Path(root)
    rec = root / "recordings" if (root / "recordings").is_dir() else root
    if not rec.is_dir():
        raise FileNotFoundError(f"FSDD recordings folder not found: {rec}")
    paths, labels, groups, split = [], [], [], []
    for p in _wavs(rec):
        m = _FSDD_NAME.match(p.name)
        if not m:
            continue
        paths.append(str(p))
        labels.append(int(m.group(1)))
        groups.append(m.group(2))
        split.append("test" if int(m.group(3)) < 5 else "train")
    if not paths:
        raise FileNotFoundError(f"no {{digit}}_{{speaker}}_{{index}}.wav files under {rec}")
    digits = sorted(set(labels))
    remap = {d: i for i, d in enumerate(digits)}
    return ClipSet("fsdd", paths, np.array([remap[d] for d in labels], dtype=np.int64), [str(d) for d in digits],
                   np.array(groups), split=np.array(split))


ARABIC_SPLITS = {"train": "train.csv", "validation": "val.csv", "test": "test.csv"}
_ARABIC_NAME = re.compile(r"^(\d{8})_NO_\d+$")


def read_arabic_speech_commands(root: str | os.PathLike) -> ClipSet:
    """Read Arabic Speech Commands (Ghandoura et al. 2021) from the data set's layout.

    Every split list present (``train.csv``, ``val.csv``, ``test.csv``; at least one) contributes its rows,
    and ``split`` says which list a clip came from (``train`` / ``validation`` / ``test``). Classes are the
    keywords in sorted order; ``groups`` are speakers (the first 8 digits of the file name).

    Raises:
        FileNotFoundError: no split list, or listed files missing (with their count).
        ValueError: a malformed list (columns, a file name without a speaker id, a file in two lists).
    """
    root = Path(root)
    lists = {s: root / name for s, name in ARABIC_SPLITS.items() if (root / name).is_file()}
    if not lists:
        raise FileNotFoundError(f"no Arabic Speech Commands split list ({', '.join(ARABIC_SPLITS.values())}) in {root}")
    rows: list[tuple[str, str, str]] = []  # (relative file, class, split)
    for split, path in lists.items():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"file", "class"}.issubset(reader.fieldnames):
                raise ValueError(f"{path}: expected the columns file,class")
            rows += [(r["file"].strip(), r["class"].strip(), split) for r in reader if r["file"].strip()]
    seen: dict[str, str] = {}
    for rel, _, split in rows:
        if seen.setdefault(rel, split) != split:
            raise ValueError(f"{root}: {rel} is listed in both the {seen[rel]} and the {split} split")
    missing = [rel for rel, _, _ in rows if not (root / rel).is_file()]
    if missing:
        raise _missing_error(root, missing, len(rows), "Arabic Speech Commands clips")
    groups = []
    for rel, _, _ in rows:
        m = _ARABIC_NAME.match(Path(rel).stem)
        if not m:
            raise ValueError(f"{root}: {rel} does not follow {{speaker}}_NO_{{nn}} (8-digit speaker id)")
        groups.append(m.group(1))
    class_names = sorted({c for _, c, _ in rows})
    index = {c: i for i, c in enumerate(class_names)}
    return ClipSet(
        name="arabic_speech_commands",
        paths=[str(root / rel) for rel, _, _ in rows],
        labels=np.array([index[c] for _, c, _ in rows], dtype=np.int64),
        class_names=class_names,
        groups=np.array(groups),
        split=np.array([s for _, _, s in rows]),
        notes=[f"split lists: {', '.join(p.name for p in lists.values())} (speaker-disjoint)"],
    )


def grouped_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold id ``0..k-1`` per clip from a seeded ``StratifiedGroupKFold``: no group in two folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    if k < 2 or n_groups < k:
        raise ValueError(f"need 2 <= k <= number of groups ({n_groups}) for grouped folds, got k={k}")
    folds = np.full(len(labels), -1, dtype=np.int64)
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, test) in enumerate(sgkf.split(np.zeros(len(labels)), labels, groups)):
        folds[test] = i
    return folds
