"""Pack audio files into tar shards for streaming training (WebDataset layout).

``python -m ajepa.data.shard SRC --out DIR [--shard-size 1000 | --max-bytes 1e9] [--labels labels.csv]``

SRC is a folder (searched recursively) or a manifest (.csv / .jsonl / .txt), listed by
:func:`ajepa.features.audio.list_audio_files`. The result is::

    DIR/shard-000000.tar, DIR/shard-000001.tar, ...   members "{key}.{ext}" (audio bytes unchanged)
                                                      and "{key}.json" ({"path", "sha256"[, "label"]})
    DIR/index.json                                    shards with member count, bytes and sha256;
                                                      the skipped files with their reasons

Guarantees, because a corpus is only as good as its copy:

- the audio bytes are copied verbatim (no re-encoding) and their sha256 is stored next to them;
- every shard is written to a temporary name, fsynced and renamed, so a crash never leaves a truncated
  ``shard-*.tar``; ``index.json`` is written the same way, last;
- the output depends only on the input and the options: files are sorted (then shuffled by ``--seed`` when
  asked), tar headers carry no timestamps or owners, so the same corpus gives byte-identical shards;
- unreadable, missing or undecodable files are skipped, counted and listed, never fatal.

Keys are ``{i:08d}-{slug}`` where ``i`` is the file's position in the sorted list and ``slug`` a sanitised
form of its relative path: unique by construction, and free of dots and slashes (WebDataset splits the key
from the extension at the first dot of the member name).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import re
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ajepa.io import atomic_write
from ajepa.errors import AudioInputError, ConfigError
from ajepa.features.audio import list_audio_files

__all__ = [
    "INDEX_NAME",
    "ShardInfo",
    "ShardReport",
    "make_key",
    "read_index",
    "read_labels",
    "verify_shards",
    "write_shards",
    "main",
]

logger = logging.getLogger(__name__)

INDEX_NAME = "index.json"
INDEX_FORMAT = "ajepa-shards"
INDEX_VERSION = 1
SHARD_PATTERN = "shard-{:06d}.tar"
_SHARD_RE = re.compile(r"^shard-\d{6}\.tar$")
_SLUG_MAX = 64           # keeps member names well under the 100-character ustar limit
_TAR_BLOCK = 512
_HASH_CHUNK = 1 << 20


@dataclass
class ShardInfo:
    """One entry of ``index.json``: a shard file and what it holds."""

    name: str       # file name inside the shard folder
    count: int      # samples (audio members) in the shard
    bytes: int      # size of the tar file
    sha256: str     # of the whole tar file


@dataclass
class ShardReport:
    """What :func:`write_shards` did."""

    out_dir: str
    shards: list[ShardInfo] = field(default_factory=list)
    num_samples: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)   # {"path", "reason"}
    unlabelled: int = 0   # files without a row in the labels file (only counted when labels were given)


def make_key(index: int, rel_path: str) -> str:
    """A unique, WebDataset-safe sample key: ``{index:08d}-{slug}``.

    The slug keeps letters, digits, ``_`` and ``-`` of the relative path without its suffix; everything else
    (dots, slashes, spaces, non-ASCII) becomes ``_``. Uniqueness comes from ``index``, not from the slug.
    """
    stem = rel_path.rsplit(".", 1)[0] if "." in Path(rel_path).name else rel_path
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:_SLUG_MAX]
    return f"{index:08d}-{slug}" if slug else f"{index:08d}"


def read_labels(path: str | os.PathLike, label_column: str | None = None) -> dict[str, str]:
    """Read a labels CSV into ``{path as written: label}``.

    The path column is ``path`` (else ``filename``, else the first column); the label column is
    ``label_column`` when given, else ``label``, else the second column. The first row is a header.

    Raises:
        AudioInputError: the file cannot be read, or lacks the columns.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [row for row in csv.reader(fh) if row and any(cell.strip() for cell in row)]
    except OSError as err:
        raise AudioInputError(f"{path}: cannot read the labels file ({err})") from err
    if len(rows) < 2:
        raise AudioInputError(f"{path}: the labels file needs a header row and at least one data row")
    header = [cell.strip() for cell in rows[0]]
    path_col = next((header.index(n) for n in ("path", "filename") if n in header), 0)
    if label_column is not None:
        if label_column not in header:
            raise AudioInputError(f"{path}: no column {label_column!r} in the header {header}")
        label_col = header.index(label_column)
    elif "label" in header:
        label_col = header.index("label")
    elif len(header) >= 2:
        label_col = 1 if path_col != 1 else 0
    else:
        raise AudioInputError(f"{path}: a labels file needs a path column and a label column")
    labels: dict[str, str] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if max(path_col, label_col) >= len(row):
            raise AudioInputError(f"{path}:{line_no}: the row has fewer than {max(path_col, label_col) + 1} columns")
        labels[row[path_col].strip()] = row[label_col].strip()
    return labels


class _LabelLookup:
    """Finds the label of a file by relative path, then absolute path, then (unique) file name.

    Label files come in all conventions (ESC-50's ``meta/esc50.csv`` lists bare file names, others list paths
    relative to the corpus or absolute ones), so all three are tried, most specific first.
    """

    def __init__(self, labels: dict[str, str], labels_dir: Path) -> None:
        self.by_rel = {Path(p).as_posix(): lab for p, lab in labels.items()}
        self.by_abs = {os.path.normpath(labels_dir / p): lab for p, lab in labels.items()}
        names: dict[str, list[str]] = {}
        for p, lab in labels.items():
            names.setdefault(Path(p).name, []).append(lab)
        self.by_name = {n: labs[0] for n, labs in names.items() if len(labs) == 1}

    def __call__(self, rel_path: str, abs_path: str) -> str | None:
        for table, key in ((self.by_rel, rel_path), (self.by_abs, os.path.normpath(abs_path)),
                           (self.by_name, Path(rel_path).name)):
            if key in table:
                return table[key]
        return None


def _relative_path(path: str, base: Path) -> str:
    """``path`` relative to ``base`` in POSIX form, or the path as given when it lies outside ``base``."""
    try:
        return Path(os.path.normpath(path)).relative_to(os.path.normpath(base)).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _read_checked(path: str) -> tuple[bytes | None, str]:
    """The file's bytes when soundfile can parse its header, else ``(None, reason)``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        return None, f"{type(err).__name__}: {err.strerror or err}"
    if not data:
        return None, "empty file"
    try:
        # Header only: catches non-audio and unknown formats without paying for a full decode.
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        return None, f"not readable by soundfile ({err})"
    if info.frames == 0:
        return None, "no audio frames"
    return data, ""


def _tar_size(num_bytes: int) -> int:
    """Bytes a member of ``num_bytes`` takes in a tar: one header block plus padded data."""
    return _TAR_BLOCK + -(-num_bytes // _TAR_BLOCK) * _TAR_BLOCK


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    # Fixed metadata (no mtime, owner, or permissions from the source) keeps shards byte-reproducible.
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _write_shard(path: Path, samples: list[tuple[str, str, bytes, bytes]]) -> ShardInfo:
    """Write ``(key, ext, audio bytes, json bytes)`` samples into the tar ``path`` atomically."""

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, ext, audio, meta in samples:
                _add_member(tar, f"{key}.{ext}", audio)
                _add_member(tar, f"{key}.json", meta)

    atomic_write(path, write)
    return ShardInfo(name=path.name, count=len(samples), bytes=path.stat().st_size, sha256=_sha256_file(path))


def write_shards(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    shard_size: int = 1000,
    max_bytes: float | None = None,
    labels: str | os.PathLike | None = None,
    label_column: str | None = None,
    shuffle_seed: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> ShardReport:
    """Pack the audio files of a folder or manifest into tar shards plus ``index.json``.

    Args:
        src: folder or manifest, as for :func:`ajepa.features.audio.list_audio_files`.
        out_dir: the shard folder (created if needed).
        shard_size: at most this many samples per shard.
        max_bytes: at most about this many bytes per shard (a single file larger than this gets a shard
            of its own); None for no byte limit.
        labels: optional CSV mapping paths (relative to ``src``, absolute, or bare file names) to labels.
        label_column: the label column of ``labels`` (default ``label``, else the second column).
        shuffle_seed: when given, the sorted files are permuted by ``np.random.default_rng(shuffle_seed)``
            before packing, so that each shard mixes the whole corpus (folders are often sorted by class).
        overwrite: replace an existing shard set in ``out_dir``; without it such a folder is an error.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`ShardReport`; the same information is in ``out_dir/index.json``.

    Raises:
        ConfigError: bad sizes, or ``out_dir`` already holds shards and ``overwrite`` is False.
        AudioInputError: ``src`` or ``labels`` cannot be read, or not one file could be packed.
    """
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1, got {shard_size}")
    if max_bytes is not None and max_bytes <= 0:
        raise ConfigError(f"max_bytes must be > 0, got {max_bytes}")
    src_path = Path(src).expanduser()
    out = Path(out_dir).expanduser()
    existing = sorted(p.name for p in out.glob("*") if p.name == INDEX_NAME or _SHARD_RE.match(p.name)) \
        if out.is_dir() else []
    if existing and not overwrite:
        raise ConfigError(f"{out} already holds a shard set ({existing[0]}, ...); pass --overwrite to replace it")
    files = list_audio_files(src_path)
    if not files:
        raise AudioInputError(f"{src_path}: no audio files found")
    # Relative paths (what index users and label files speak) are taken against the folder, or the
    # manifest's folder, which is also where list_audio_files resolves relative manifest entries.
    base = src_path if src_path.is_dir() else src_path.parent
    lookup = _LabelLookup(read_labels(labels, label_column), Path(labels).parent) if labels else None

    order = np.arange(len(files))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(files))

    out.mkdir(parents=True, exist_ok=True)
    report = ShardReport(out_dir=str(out))
    pending: list[tuple[str, str, bytes, bytes]] = []
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending, pending_bytes
        if pending:
            report.shards.append(_write_shard(out / SHARD_PATTERN.format(len(report.shards)), pending))
            pending, pending_bytes = [], 0

    iterator: Sequence[int] | object = order
    if progress:
        from tqdm import tqdm

        iterator = tqdm(order, desc="sharding", unit="file")
    for i in iterator:  # type: ignore[union-attr]
        path = files[int(i)]
        data, reason = _read_checked(path)
        if data is None:
            report.skipped.append({"path": path, "reason": reason})
            logger.warning("skipping %s: %s", path, reason)
            continue
        rel = _relative_path(path, base)
        meta: dict[str, object] = {"path": rel, "sha256": hashlib.sha256(data).hexdigest()}
        if lookup is not None:
            label = lookup(rel, path)
            if label is None:
                report.unlabelled += 1
            meta["label"] = label
        meta_bytes = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")
        ext = Path(path).suffix.lower().lstrip(".")
        size = _tar_size(len(data)) + _tar_size(len(meta_bytes))
        if pending and (len(pending) >= shard_size or (max_bytes is not None and pending_bytes + size > max_bytes)):
            flush()
        pending.append((make_key(int(i), rel), ext, data, meta_bytes))
        pending_bytes += size
        report.num_samples += 1
    flush()
    if report.num_samples == 0:
        raise AudioInputError(
            f"{src_path}: none of the {len(files)} files could be packed; first failure: "
            f"{report.skipped[0]['path']}: {report.skipped[0]['reason']}"
        )

    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "source": str(src_path),
        "labels": str(labels) if labels else None,
        "shuffle_seed": shuffle_seed,
        "num_samples": report.num_samples,
        "num_bytes": sum(s.bytes for s in report.shards),
        "shards": [asdict(s) for s in report.shards],
        "skipped": report.skipped,
    }
    atomic_write(out / INDEX_NAME, lambda tmp: tmp.write_text(json.dumps(index, indent=1) + "\n", "utf-8"))
    # Only now that the new index is in place: drop shards of an older, larger set that it no longer lists.
    keep = {s.name for s in report.shards}
    for name in existing:
        if name != INDEX_NAME and name not in keep:
            (out / name).unlink()
    return report


def read_index(shard_dir: str | os.PathLike) -> dict:
    """Load and check ``shard_dir/index.json``.

    Raises:
        AudioInputError: missing, unparsable, or not an ajepa shard index.
    """
    path = Path(shard_dir) / INDEX_NAME
    try:
        index = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise AudioInputError(f"{path}: cannot read the shard index ({err})") from err
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("shards"), list):
        raise AudioInputError(f"{path}: not an ajepa shard index (format {INDEX_FORMAT!r} with a 'shards' list)")
    return index


def verify_shards(shard_dir: str | os.PathLike) -> list[str]:
    """Check every shard listed in ``index.json`` against its size and sha256.

    Returns:
        One line per problem (missing file, size or checksum mismatch); empty when all is well.
    """
    root = Path(shard_dir)
    problems = []
    for shard in read_index(root)["shards"]:
        path = root / shard["name"]
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != shard["bytes"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, the index says {shard['bytes']}")
        elif _sha256_file(path) != shard["sha256"]:
            problems.append(f"{path}: sha256 differs from the index")
    return problems


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ajepa.data.shard",
        description="Pack audio files into WebDataset-style tar shards (bytes unchanged) with an index.json.",
    )
    parser.add_argument("src", help="folder (recursive) or manifest (.csv/.jsonl/.txt); with --verify: a shard folder")
    parser.add_argument("--out", help="output folder for shard-NNNNNN.tar and index.json")
    parser.add_argument("--shard-size", type=int, default=1000, help="max samples per shard (default 1000)")
    parser.add_argument("--max-bytes", type=float, default=None, help="max bytes per shard, e.g. 1e9")
    parser.add_argument("--labels", default=None, help="CSV with a path column and a label column")
    parser.add_argument("--label-column", default=None, help="label column name (default: label, else 2nd)")
    parser.add_argument("--seed", type=int, default=None, help="shuffle the sorted files with this seed first")
    parser.add_argument("--overwrite", action="store_true", help="replace a shard set already in --out")
    parser.add_argument("--verify", action="store_true", help="check SRC's shards against its index.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.verify and not args.out:
        parser.error("--out is required (unless --verify)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(message)s")  # skipped files are summarised below
    try:
        if args.verify:
            problems = verify_shards(args.src)
            for line in problems:
                print(line, file=sys.stderr)
            print(f"{args.src}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            return 1 if problems else 0
        report = write_shards(
            args.src, args.out, shard_size=args.shard_size, max_bytes=args.max_bytes, labels=args.labels,
            label_column=args.label_column, shuffle_seed=args.seed, overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except (ConfigError, AudioInputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    total = sum(s.bytes for s in report.shards)
    print(f"wrote {report.num_samples} clips in {len(report.shards)} shards ({total / 1e6:.1f} MB) to {report.out_dir}")
    if report.unlabelled:
        print(f"{report.unlabelled} clips had no row in {args.labels} (label null)")
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable files (listed in index.json):", file=sys.stderr)
        for item in report.skipped[:20]:
            print(f"  {item['path']}: {item['reason']}", file=sys.stderr)
        if len(report.skipped) > 20:
            print(f"  ... and {len(report.skipped) - 20} more", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
