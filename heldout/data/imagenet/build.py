"""Building the indexed ImageNet TFRecord shards from ILSVRC-2012 files (`heldout build-imagenet`).

The authors published the filename-to-index mapping of their ImageNet shards,
``imagenet_index.npz`` (Feldman & Zhang, 2020, project page): ``tr_filenames``/``tr_labels``
(1,281,167 training images) and ``tt_filenames``/``tt_labels`` (50,000 validation images, the
``test`` split), plus ``tr_mem`` (memorization estimates, not needed here). The position of a
file in these arrays is its ``index``; files are keyed by basename (``n01440764_10026.JPEG``,
``ILSVRC2012_val_00000001.JPEG``); class labels follow the sorted order of the synsets
(the mapping's labels may be 0- or 1-based: see `read_index_mapping`).

`build_imagenet` writes, for each split, shards ``<out>/<prefix>-<i>-of-<n>`` (prefix ``train``
or ``validation``) holding contiguous index ranges in index order, each example a
`tf.train.Example` with ``image/encoded`` (JPEG), ``image/class/label`` (1-based), ``index``,
``image/filename`` (basename), ``image/class/synset`` and ``image/format``. Images that are not
RGB or grayscale JPEG (ILSVRC-2012 has 22 CMYK JPEGs and one PNG named .JPEG) are re-encoded as
RGB JPEG (quality `REENCODE_QUALITY`, no chroma subsampling: our choice, the authors' is not
published); every other file is copied byte for byte. Each shard is written to a temporary file
and renamed, so an interrupted build resumes by skipping the shards that exist. It also writes
``labels.npz`` (labels in index order and each shard's index range, read by
`heldout.data.imagenet.tfrecords.load_tfrecord_dataset`), ``build_config.json`` (what the shards
were built from; a resumed build must match it) and ``build_report.json``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import json
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from heldout.atomic import atomic_path, atomic_write
from heldout.data.imagenet.mapping import _SYNSET, _TRAIN_NAME, MAPPING_KEYS, read_index_mapping
from heldout.data.imagenet.tfrecords import (
    DEFAULT_FEATURES,
    LABELS_FILE,
    SHARD_PREFIX,
    FeatureNames,
)
from heldout.errors import BuildError
from heldout.npzio import load_npz, save_npz_atomic

DEFAULT_SHARDS = {"train": 1024, "test": 128}
REENCODE_QUALITY = 95
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
CONFIG_FILE = "build_config.json"
REPORT_FILE = "build_report.json"


# --------------------------------------------------------------------------------------------
# Files on disk.


def scan_images(root: str) -> dict[str, list[tuple[str, str | None]]]:
    """Image files (``.JPEG``/``.jpg``/``.png``, any case) directly in `root` or one folder
    below: basename -> [(path, folder synset or None)].

    Raises:
      BuildError: `root` is not a directory.
    """
    if not os.path.isdir(root):
        raise BuildError(f"{root}: no such directory")
    found: dict[str, list[tuple[str, str | None]]] = {}

    def add(entry: os.DirEntry, folder: str | None) -> None:
        if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
            found.setdefault(entry.name, []).append((entry.path, folder))

    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir():
                folder = entry.name if _SYNSET.match(entry.name) else None
                with os.scandir(entry.path) as inner:
                    for sub in inner:
                        add(sub, folder)
            else:
                add(entry, None)
    return found


def as_rgb_jpeg(data: bytes, quality: int = REENCODE_QUALITY) -> tuple[bytes, str | None]:
    """The bytes to store for an image file: unchanged for RGB or grayscale JPEG, else the
    image re-encoded as RGB JPEG.

    Returns:
      (bytes, reason): reason is None when unchanged, else e.g. ``"CMYK JPEG"``, ``"PNG data"``.

    Raises:
      OSError / PIL.UnidentifiedImageError: not an image Pillow can read.
    """
    if data[:3] == b"\xff\xd8\xff":
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            mode = image.mode
        if mode in ("RGB", "L"):
            return data, None
        reason = f"{mode} JPEG"
    else:
        reason = "PNG data" if data[:8] == b"\x89PNG\r\n\x1a\n" else "not JPEG data"
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=quality, subsampling=0)  # 4:4:4, keep colour detail
    return buffer.getvalue(), reason


# --------------------------------------------------------------------------------------------
# The build.


@dataclasses.dataclass
class BuildReport:
    """What a build found and did (also written to ``<out>/build_report.json``).

    Attributes:
      missing: files of the mapping not found on disk: {split, index, filename}.
      extra: image files on disk that are not in the mapping (paths).
      disagreements: {split, index, filename, label, synset, found} where the file's folder
        (or, for training files, its name) names another synset than the mapping's label.
      unreadable: {split, index, path, error}: files Pillow cannot read.
      reencoded: {split, index, filename, reason}: files stored re-encoded as RGB JPEG (in the
        shards written by this run).
      shards_written, shards_skipped: shards written now / already complete.
      shards_incomplete: shards not written because files are missing or unreadable.
    """

    missing: list[dict] = dataclasses.field(default_factory=list)
    extra: list[str] = dataclasses.field(default_factory=list)
    disagreements: list[dict] = dataclasses.field(default_factory=list)
    unreadable: list[dict] = dataclasses.field(default_factory=list)
    reencoded: list[dict] = dataclasses.field(default_factory=list)
    shards_written: int = 0
    shards_skipped: int = 0
    shards_incomplete: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No missing or unreadable file, no synset disagreement, every shard complete."""
        return not (self.missing or self.unreadable or self.disagreements
                    or self.shards_incomplete)

    def summary(self, limit: int = 5) -> list[str]:
        """Human-readable lines, listing up to `limit` items of each kind."""
        lines = [
            f"shards: {self.shards_written} written, {self.shards_skipped} already complete, "
            f"{len(self.shards_incomplete)} not written (missing or unreadable files)",
            f"{len(self.reencoded)} images re-encoded as RGB JPEG",
        ]
        for title, items in (
            ("files in the mapping missing on disk", self.missing),
            ("files on disk not in the mapping", self.extra),
            ("synset disagreements with the mapping", self.disagreements),
            ("unreadable files", self.unreadable),
        ):
            lines.append(f"{len(items)} {title}")
            lines.extend(f"  {item}" for item in items[:limit])
            if len(items) > limit:
                lines.append(f"  ... ({len(items) - limit} more in {REPORT_FILE})")
        return lines


def shard_ranges(n: int, num_shards: int) -> np.ndarray:
    """int64 [num_shards, 2]: ``[first, end)`` index range of each shard (contiguous, sizes
    differing by at most one)."""
    bounds = (np.arange(num_shards + 1, dtype=np.int64) * n) // num_shards
    return np.stack([bounds[:-1], bounds[1:]], axis=1)


def shard_name(split: str, shard: int, num_shards: int) -> str:
    return f"{SHARD_PREFIX[split]}-{shard:05d}-of-{num_shards:05d}"


def _match_files(split, mapping, found, report) -> list[str | None]:
    """Path of each mapping entry (None when missing); fills missing/disagreements."""
    names = mapping.filenames[split].tolist()
    labels = mapping.labels(split)
    synsets = mapping.synsets
    paths: list[str | None] = []
    for index, name in enumerate(names):
        candidates = found.get(name, [])
        want = synsets[labels[index]] if synsets else None
        if not candidates:
            paths.append(None)
            report.missing.append({"split": split, "index": index, "filename": name})
            continue
        chosen = next((c for c in candidates if c[1] == want), candidates[0])
        paths.append(chosen[0])
        named = _TRAIN_NAME.match(name) if split == "train" else None
        folder = chosen[1] or (named.group(1) if named else None)
        if want is not None and folder is not None and folder != want:
            report.disagreements.append({
                "split": split, "index": index, "filename": name, "label": int(labels[index]),
                "synset": want, "found": chosen[0] if chosen[1] else f"filename {name}",
            })
    known = set(names)
    report.extra.extend(p for name, c in found.items() if name not in known for p, _ in c)
    return paths


def _example(encoded: bytes, label: int, index: int, name: str, synset: str, f: FeatureNames):
    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    return tf.train.Example(features=tf.train.Features(feature={
        f.image: b(encoded),
        f.label: i(label + f.label_offset),
        f.index: i(index),
        f.filename: b(name.encode()),
        "image/class/synset": b(synset.encode()),
        "image/format": b(b"JPEG"),
    }))


def _write_shard(path, split, first, end, paths, mapping, features, allow_missing, on_example):
    """Writes one shard through a temporary file; returns (reencoded, unreadable)."""
    reencoded, unreadable = [], []
    labels, names = mapping.labels(split), mapping.filenames[split]
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for index in range(first, end):
                source = paths[index]
                on_example()
                if source is None:
                    continue
                try:
                    with open(source, "rb") as f:
                        encoded, reason = as_rgb_jpeg(f.read())
                except (OSError, UnidentifiedImageError, ValueError) as e:
                    unreadable.append({"split": split, "index": index, "path": source,
                                       "error": f"{type(e).__name__}: {e}"})
                    continue
                if reason:
                    reencoded.append({"split": split, "index": index,
                                      "filename": str(names[index]), "reason": reason})
                label = int(labels[index])
                synset = mapping.synsets[label] if mapping.synsets else ""
                writer.write(_example(encoded, label, index, str(names[index]), synset,
                                      features).SerializeToString())
        if unreadable and not allow_missing:
            raise _ShardAbandoned(reencoded, unreadable)
    return reencoded, unreadable


class _ShardAbandoned(Exception):
    def __init__(self, reencoded, unreadable):
        super().__init__("unreadable files")
        self.reencoded, self.unreadable = reencoded, unreadable


def _check_config(out: str, config: dict) -> None:
    path = os.path.join(out, CONFIG_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        differ = {k: (old.get(k), v) for k, v in config.items()
                  if k != "splits" and old.get(k) != v}
        if differ:
            raise BuildError(
                f"{out} holds shards built with other settings ({CONFIG_FILE}: "
                + ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in differ.items())
                + "); use another `out` or delete the old shards"
            )
        config = {**config, "splits": sorted(set(old.get("splits", [])) | set(config["splits"]))}
    with atomic_write(path, "w") as f:
        json.dump(config, f, indent=1)


def build_imagenet(
    out: str | os.PathLike,
    index_npz: str | os.PathLike,
    train_dir: str | os.PathLike | None = None,
    val_dir: str | os.PathLike | None = None,
    num_shards: dict[str, int] | None = None,
    num_workers: int | None = None,
    allow_missing: bool = False,
    label_base: str | int = "auto",
    synsets: Sequence[str] | None = None,
    features: FeatureNames = DEFAULT_FEATURES,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Writes the indexed TFRecord shards of ImageNet from ILSVRC-2012 files and the mapping.

    Args:
      out: output directory (created).
      index_npz: the published ``imagenet_index.npz``.
      train_dir: ILSVRC-2012 training images in synset folders ``<synset>/<file>.JPEG``.
      val_dir: validation images, in one flat folder or in synset folders.
      num_shards: split -> number of shards (default: train 1024, test 128, as released).
      num_workers: shards written in parallel (threads; default min(8, CPUs)).
      allow_missing: write shards without the missing or unreadable files (their indices are
        then absent from the shards) instead of leaving those shards unwritten.
      label_base, synsets: see `read_index_mapping`.
      features: feature names to write.
      progress: show a tqdm progress bar.
      log: where progress messages go.

    Returns:
      The `BuildReport` (also written to ``<out>/build_report.json``).

    Raises:
      BuildError: no directory given, a directory missing, or `out` holds shards built from
        another mapping or with other shard counts.
      NpzError: a bad mapping.
    """
    dirs = {"train": train_dir, "test": val_dir}
    dirs = {s: os.fspath(d) for s, d in dirs.items() if d is not None}
    if not dirs:
        raise BuildError("give `train_dir` and/or `val_dir`")
    out = os.fspath(out)
    mapping = read_index_mapping(index_npz, label_base, synsets)
    counts = {**DEFAULT_SHARDS, **(num_shards or {})}
    for split in dirs:
        n = len(mapping.filenames[split])
        if not 1 <= counts[split] <= max(n, 1):
            raise BuildError(f"{split}: number of shards must be in [1, {n}], got {counts[split]}")
    os.makedirs(out, exist_ok=True)
    _check_config(out, {
        "mapping": os.path.basename(mapping.source),
        "mapping_sha256": mapping.digest(),
        "label_base": mapping.label_base,
        "num_shards": {s: counts[s] for s in MAPPING_KEYS},
        "features": dataclasses.asdict(features),
        "splits": sorted(dirs),
    })
    report = BuildReport()
    jobs, ranges, paths = [], {}, {}
    for split, root in dirs.items():
        log(f"scanning {root} ...")
        paths[split] = _match_files(split, mapping, scan_images(root), report)
        ranges[split] = shard_ranges(len(paths[split]), counts[split])
        for shard, (first, end) in enumerate(ranges[split]):
            path = os.path.join(out, shard_name(split, shard, counts[split]))
            if os.path.isfile(path):
                report.shards_skipped += 1
            elif not allow_missing and any(p is None for p in paths[split][first:end]):
                report.shards_incomplete.append(os.path.basename(path))
            else:
                jobs.append((path, split, int(first), int(end)))
    workers = num_workers or min(8, os.cpu_count() or 1)
    total = sum(end - first for _, _, first, end in jobs)
    lock = threading.Lock()
    with tqdm(total=total, desc="build-imagenet", unit="img", disable=not progress) as bar:

        def tick() -> None:
            with lock:
                bar.update(1)

        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {
                pool.submit(_write_shard, path, split, first, end, paths[split], mapping,
                            features, allow_missing, tick): path
                for path, split, first, end in jobs
            }
            for future in concurrent.futures.as_completed(futures):
                try:
                    reencoded, unreadable = future.result()
                    report.shards_written += 1
                except _ShardAbandoned as e:
                    reencoded, unreadable = e.reencoded, e.unreadable
                    report.shards_incomplete.append(os.path.basename(futures[future]))
                report.reencoded.extend(reencoded)
                report.unreadable.extend(unreadable)
    _write_labels(out, mapping, dirs, ranges, paths)
    for items in (report.reencoded, report.unreadable, report.missing):
        items.sort(key=lambda d: (d["split"], d["index"]))
    report.shards_incomplete.sort()
    with atomic_write(os.path.join(out, REPORT_FILE), "w") as f:
        json.dump(dataclasses.asdict(report), f, indent=1)
    return report


def _write_labels(out, mapping, dirs, ranges, paths) -> None:
    path = os.path.join(out, LABELS_FILE)
    arrays = load_npz(path) if os.path.isfile(path) else {}
    for split in dirs:
        arrays[f"{split}__label"] = mapping.labels(split)
        arrays[f"{split}__shard_range"] = ranges[split]
        arrays[f"{split}__present"] = np.asarray([p is not None for p in paths[split]])
    arrays["__num_classes"] = np.int64(mapping.num_classes)
    arrays["synsets"] = np.asarray(mapping.synsets, dtype="U9")
    save_npz_atomic(path, arrays)
