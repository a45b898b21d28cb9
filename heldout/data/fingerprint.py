"""Dataset fingerprints: which dataset, in which order, an output was computed on.

A per-example output (correctness, memorization, influence, C-scores) is only meaningful in the
order of the dataset it was computed on; combining outputs computed on differently ordered or
different datasets silently misaligns them. A fingerprint records the dataset's name, version,
split sizes and a hash of each split's label sequence (`heldout.data.label_hash`: SHA-256 of the
labels as little-endian int64, first 16 hex digits), which changes with any reordering that
moves a label. It is stored in `.npz` outputs as a few string and int64 arrays under the keys
``fingerprint__name``, ``fingerprint__version``, ``fingerprint__splits``,
``fingerprint__sizes`` and ``fingerprint__label_hashes`` (no pickled objects), and checked when
outputs are combined (`check_fingerprints`) or used with a dataset (`check_dataset`).

A fingerprint says nothing of the images: another evaluation set with the same labels in the
same order (shifted, noisy or inverted images) has the same one. What a run's recorded outputs
(`heldout.experiment.RecordedOutputs`) were computed on is therefore also pinned by
`images_digest`, a SHA-256 of a split's stored images.

Pure numpy: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from heldout.errors import FingerprintError, NotFoundError
from heldout.npzio import load_npz, require

if TYPE_CHECKING:
    from heldout.data.protocol import Dataset

PREFIX = "fingerprint__"
KEYS = tuple(PREFIX + k for k in ("name", "version", "splits", "sizes", "label_hashes"))


def label_hash(labels: np.ndarray) -> str:
    """SHA-256 (first 16 hex digits) of a label sequence as little-endian int64."""
    return hashlib.sha256(np.asarray(labels, "<i8").tobytes()).hexdigest()[:16]


#: Bytes of images hashed at a time by `images_digest`.
DIGEST_CHUNK_BYTES = 1 << 24


def images_digest(dataset: Dataset, split: str) -> str | None:
    """A digest of a split's stored images, as the dataset holds them before any preprocessing
    (the uint8 pixels that `heldout.data.preprocessing.InputPreprocessing` turns into model
    input; float pixels as they are), in ``index`` order.

    E.g. ``uint8 [500, 8, 8, 1] sha256:<64 hex digits>``: the dtype and shape, then the SHA-256
    of the images' bytes (little-endian), hashed `DIGEST_CHUNK_BYTES` at a time from the
    dataset's own array (no copy of the split; MNIST's 47 MB training split in a fraction of a
    second). Two splits have the same digest when they hold the same pixels in the same order.

    Args:
      dataset: the dataset (``split`` loaded).
      split: e.g. ``test``.

    Returns:
      The digest; None for a dataset that does not hold its images in memory (a
      `heldout.data.imagenet.tfrecords.TFRecordImageDataset`, whose JPEGs would have to be
      read whole).

    Raises:
      DatasetSplitError: the dataset has no such split.
    """
    from heldout.data.arrays import ArrayDataset, DatasetSplitError

    if not isinstance(dataset, ArrayDataset):
        return None
    if split not in dataset.images:
        raise DatasetSplitError(f"{dataset.name}: no split {split!r}; it has {dataset.splits}")
    images = np.asarray(dataset.images[split])
    little = images.dtype.newbyteorder("<")
    rows = max(1, DIGEST_CHUNK_BYTES // max(1, images[:1].nbytes))
    digest = hashlib.sha256()
    for start in range(0, len(images), rows):
        chunk = np.ascontiguousarray(images[start : start + rows], dtype=little)
        digest.update(memoryview(chunk).cast("B"))
    shape = ", ".join(map(str, images.shape))
    return f"{images.dtype.name} [{shape}] sha256:{digest.hexdigest()}"


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """Identity and order of a dataset.

    Attributes:
      name: dataset name, e.g. ``cifar10`` or ``imagenet2012``.
      version: e.g. ``3.0.2``; '' when unknown.
      splits: split names, sorted.
      sizes: examples per split, aligned with `splits`.
      label_hashes: `label_hash` of each split's labels in dataset order.
    """

    name: str
    version: str
    splits: tuple[str, ...]
    sizes: tuple[int, ...]
    label_hashes: tuple[str, ...]

    def split(self, split: str) -> tuple[int, str]:
        """(size, label hash) of a split.

        Raises:
          KeyError: the fingerprint has no such split.
        """
        if split not in self.splits:
            raise NotFoundError(f"fingerprint of {self.describe()} has no split {split!r}")
        i = self.splits.index(split)
        return self.sizes[i], self.label_hashes[i]

    def describe(self) -> str:
        """E.g. ``cifar10:3.0.2 (test 10000 #1a2b..., train 50000 #3c4d...)``."""
        parts = ", ".join(
            f"{s} {n} #{h}" for s, n, h in zip(self.splits, self.sizes, self.label_hashes,
                                              strict=True)
        )
        return f"{self.name}{':' + self.version if self.version else ''} ({parts})"

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fingerprint as `.npz`-storable arrays (str and int64), keys `KEYS`; merge them
        into an output's arrays before `save_npz_atomic`."""
        return {
            PREFIX + "name": np.asarray(self.name),
            PREFIX + "version": np.asarray(self.version),
            PREFIX + "splits": np.asarray(self.splits, dtype=str).reshape(-1),
            PREFIX + "sizes": np.asarray(self.sizes, dtype=np.int64).reshape(-1),
            PREFIX + "label_hashes": np.asarray(self.label_hashes, dtype=str).reshape(-1),
        }


def split_name(dataset_name: str) -> tuple[str, str]:
    """``"cifar10:3.0.2"`` -> ``("cifar10", "3.0.2")``; a path -> (its basename, '')."""
    if os.sep in dataset_name or dataset_name.endswith(".npz"):
        return os.path.basename(dataset_name), ""
    name, _, version = dataset_name.partition(":")
    return name, version


def fingerprint_from_labels(
    name: str, labels: Mapping[str, np.ndarray], version: str = ""
) -> Fingerprint:
    """The fingerprint of a dataset given its splits' labels in dataset order.

    Args:
      name: dataset name (``name:version`` is split when `version` is '').
      labels: split -> int [n] labels in dataset order.
      version: dataset version.
    """
    if not version:
        name, version = split_name(name)
    splits = tuple(sorted(labels))
    return Fingerprint(
        name,
        version,
        splits,
        tuple(len(labels[s]) for s in splits),
        tuple(label_hash(labels[s]) for s in splits),
    )


def fingerprint_dataset(dataset: Dataset, splits: Sequence[str] | None = None) -> Fingerprint:
    """The fingerprint of a `heldout.data.Dataset` (its ``name``, with the version after a
    colon, and its splits' labels).

    Args:
      dataset: the dataset.
      splits: the splits to include (default: all the dataset has).
    """
    splits = list(splits) if splits is not None else list(dataset.splits)
    return fingerprint_from_labels(dataset.name, {s: dataset.split_labels(s) for s in splits})


def read_fingerprint(arrays: Mapping[str, np.ndarray], source: str = "") -> Fingerprint | None:
    """The fingerprint stored in an output's arrays, or None when it has none.

    Raises:
      FingerprintError: some but not all keys, or arrays of the wrong dtype or shape (one line
        naming `source` and the key, `heldout.npzio.require`).
    """
    present = [k for k in KEYS if k in arrays]
    if not present:
        return None
    source = source or "arrays"
    if len(present) != len(KEYS):
        raise FingerprintError(
            f"{source}: incomplete dataset fingerprint: has {present}, lacks "
            f"{[k for k in KEYS if k not in arrays]}"
        )
    get = functools.partial(require, arrays, source=source, sizes={},
                            what="a dataset fingerprint", error=FingerprintError)
    name, version = (str(get(PREFIX + key, "U", ())) for key in ("name", "version"))
    splits, sizes, hashes = (get(PREFIX + key, kind, ("n_splits",)) for key, kind in (
        ("splits", "U"), ("sizes", "iu"), ("label_hashes", "U")))
    return Fingerprint(
        name,
        version,
        tuple(str(s) for s in splits),
        tuple(int(n) for n in sizes),
        tuple(str(h) for h in hashes),
    )


def read_fingerprint_file(path: str | os.PathLike) -> Fingerprint | None:
    """The fingerprint stored in an `.npz` output, or None (read with ``allow_pickle=False``)."""
    return read_fingerprint(load_npz(path), os.fspath(path))


def differences(a: Fingerprint, b: Fingerprint) -> list[str]:
    """What differs between two fingerprints ([] when compatible): the size or label hash of
    every split both have, and name and version when both name a versioned dataset (TFDS's
    ``cifar10:3.0.2``). Files (``.npz``, IDX) carry no version, so the same examples in the same
    order read from another file (a ``dataset.npz`` export, say) are compatible."""
    found = []
    if a.version and b.version:
        if a.name != b.name:
            found.append(f"name {a.name!r} vs {b.name!r}")
        if a.version != b.version:
            found.append(f"version {a.version!r} vs {b.version!r}")
    for split in sorted(set(a.splits) & set(b.splits)):
        (na, ha), (nb, hb) = a.split(split), b.split(split)
        if na != nb:
            found.append(f"split {split!r} size {na} vs {nb}")
        elif ha != hb:
            found.append(f"split {split!r} labels differ (hash {ha} vs {hb}): another order?")
    return found


def check_fingerprints(
    items: Sequence[tuple[str, Fingerprint | None]], require: bool = False
) -> Fingerprint | None:
    """Checks that outputs about to be combined were computed on the same dataset and order.

    Args:
      items: (source, fingerprint) of each output, e.g. from `read_fingerprint_file`.
      require: refuse outputs without a fingerprint (otherwise they are not checked).

    Returns:
      The first fingerprint, or None when no item has one.

    Raises:
      FingerprintError: two fingerprints differ on name, version, or the size or labels of a
        split both cover (naming both sources and what differs); or, when `require`, an item
        has none.
    """
    reference: tuple[str, Fingerprint] | None = None
    for source, fp in items:
        if fp is None:
            if require:
                raise FingerprintError(f"{source}: no dataset fingerprint ({KEYS[0]}...)")
            continue
        if reference is None:
            reference = (source, fp)
            continue
        diff = differences(reference[1], fp)
        if diff:
            raise FingerprintError(
                f"{reference[0]} and {source} were computed on different datasets or orders: "
                + "; ".join(diff)
                + f" ({reference[1].describe()} vs {fp.describe()})"
            )
    return reference[1] if reference else None


def check_dataset(
    fingerprint: Fingerprint | None, dataset: Dataset, source: str = "",
    splits: Sequence[str] | None = None,
) -> None:
    """Checks a stored fingerprint against a loaded dataset (the splits both have, or only
    those of `splits` among them).

    Raises:
      FingerprintError: naming `source` and what differs. A missing fingerprint passes.
    """
    if fingerprint is None:
        return
    splits = [s for s in fingerprint.splits if s in set(dataset.splits)
              and (splits is None or s in splits)]
    check_fingerprints([(source or "output", fingerprint),
                        (f"dataset {dataset.name}", fingerprint_dataset(dataset, splits))])


def check_labels(
    labels: Mapping[str, np.ndarray],
    fingerprint: Fingerprint | None,
    source: str,
    dataset_name: str = "labels",
    sizes: Mapping[str, int] | None = None,
) -> None:
    """Checks a dataset's labels against outputs they are about to be used with: their sizes
    (split -> number of examples the outputs cover) and, when the outputs carry a fingerprint,
    their order, dataset name and version.

    Args:
      labels: split -> int [n] labels in dataset order.
      fingerprint: the outputs' fingerprint (None: only the sizes are checked).
      source: names the outputs in messages (a file, an experiment).
      dataset_name: the labels' dataset, ``name:version`` where known (e.g. the `name` of a
        loaded dataset).
      sizes: split -> the outputs' number of examples.

    Raises:
      FingerprintError: a size that differs, or labels of another dataset, version or order
        (naming both and what differs).
    """
    for split, n in (sizes or {}).items():
        found = np.asarray(labels[split]).shape
        if found != (n,):
            raise FingerprintError(
                f"{dataset_name}: the {split} split has {found[0] if found else 0} labels but "
                f"the scores cover {n} {split} examples ({source})"
            )
    if fingerprint is None:
        return
    found = fingerprint_from_labels(dataset_name, labels)
    try:
        check_fingerprints([(source, fingerprint), (f"the labels of {dataset_name}", found)])
    except FingerprintError as e:
        raise FingerprintError(
            f"{e}. Give the dataset the runs were evaluated on, in the same order"
        ) from e
