"""The published filename-to-index mapping of the ImageNet shards (``imagenet_index.npz``).

The authors published it on the project page of Feldman & Zhang (2020): ``tr_filenames`` /
``tr_labels`` (1,281,167 training images) and ``tt_filenames`` / ``tt_labels`` (50,000
validation images, the ``test`` split), plus ``tr_mem`` (memorization estimates, not needed
here). The position of a file in these arrays is its ``index``; files are keyed by basename;
class labels follow the sorted order of the synsets, 0- or 1-based (see `read_index_mapping`).
Pure numpy: read by `heldout.data.imagenet.build` (writing shards) and
`heldout.data.imagenet.tfrecords` (labels of shards without ``labels.npz``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
from collections.abc import Sequence

import numpy as np

from heldout.errors import BuildError, NpzError
from heldout.npzio import load_npz, require

MAPPING_KEYS = {"train": ("tr_filenames", "tr_labels"), "test": ("tt_filenames", "tt_labels")}
_SYNSET = re.compile(r"^n\d{8}$")
_TRAIN_NAME = re.compile(r"^(n\d{8})_")


# --------------------------------------------------------------------------------------------
# The published mapping.


@dataclasses.dataclass(frozen=True)
class IndexMapping:
    """The filename-to-index mapping of the ImageNet shards.

    Attributes:
      filenames: split (``train``/``test``) -> str [n], basenames; position = ``index``.
      labels_0: split -> int64 [n], 0-based labels.
      synsets: the synsets in label order (``synsets[label]``), or () when unknown.
      label_base: 0 or 1, the base of the labels in the file.
      source: the file.
    """

    filenames: dict[str, np.ndarray]
    labels_0: dict[str, np.ndarray]
    synsets: tuple[str, ...]
    label_base: int
    source: str

    @property
    def num_classes(self) -> int:
        if self.synsets:
            return len(self.synsets)
        return int(max(v.max(initial=-1) for v in self.labels_0.values())) + 1

    def labels(self, split: str) -> np.ndarray:
        """int64 [n]: 0-based labels of a split in index order."""
        return self.labels_0[split]

    def digest(self) -> str:
        """SHA-256 of the filenames and labels (what the shards are built from)."""
        h = hashlib.sha256()
        for split in sorted(self.filenames):
            h.update(split.encode())
            h.update("\n".join(self.filenames[split].tolist()).encode())
            h.update(np.asarray(self.labels_0[split], "<i8").tobytes())
        return h.hexdigest()


def _basenames(value: np.ndarray) -> np.ndarray:
    if value.dtype.kind == "S":
        value = np.char.decode(value, "utf-8")
    return np.asarray([os.path.basename(v) for v in value.tolist()], dtype=value.dtype)


def read_synsets(path: str | os.PathLike) -> tuple[str, ...]:
    """Synsets in label order from a text file: the first word of each non-empty line (e.g.
    ILSVRC's ``LOC_synset_mapping.txt``).

    Raises:
      BuildError: a first word that is not a WordNet id ``n########``.
    """
    synsets = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                word = line.split()[0]
                if not _SYNSET.match(word):
                    raise BuildError(f"{path}:{number}: expected a synset like n01440764, "
                                     f"found {word!r}")
                synsets.append(word)
    return tuple(synsets)


def read_index_mapping(
    path: str | os.PathLike,
    label_base: str | int = "auto",
    synsets: Sequence[str] | None = None,
) -> IndexMapping:
    """Reads ``imagenet_index.npz`` (``allow_pickle=False``) and checks it.

    The synsets (label order) are `synsets` when given, else the sorted synsets of the
    training filenames' prefixes (``n01440764_10026.JPEG`` -> ``n01440764``). With
    ``label_base="auto"`` the labels' base is the one under which the training labels agree
    with their filenames' synsets; without synsets, 0 if the smallest label is 0.

    Raises:
      NpzError: unreadable file, missing keys, wrong shapes or dtypes, repeated filenames.
      BuildError: the label base cannot be determined, or labels outside the synsets.
    """
    path = os.fspath(path)
    arrays = load_npz(path)
    filenames, raw = {}, {}
    get = functools.partial(require, arrays, source=path, sizes={},
                            what="an imagenet_index.npz (tr_/tt_ filenames and labels)")
    for split, (name_key, label_key) in MAPPING_KEYS.items():
        names = _basenames(get(name_key, "SU", (f"n_{split}",)))
        labels = get(label_key, "iu", (f"n_{split}",))
        unique, counts = np.unique(names, return_counts=True)
        if (counts > 1).any():
            raise NpzError(f"{path}: {name_key} repeats {int((counts > 1).sum())} filenames, "
                           f"e.g. {unique[counts > 1][:3].tolist()}")
        filenames[split], raw[split] = names, labels.astype(np.int64)
    if synsets is None:
        prefixes = [_TRAIN_NAME.match(n) for n in filenames["train"].tolist()]
        synsets = tuple(sorted({m.group(1) for m in prefixes if m}))
    synsets = tuple(synsets)
    base = _label_base(path, filenames["train"], raw["train"], synsets, label_base)
    labels_0 = {s: v - base for s, v in raw.items()}
    num_classes = len(synsets) or None
    for split, value in labels_0.items():
        if len(value) and (value.min() < 0 or (num_classes and value.max() >= num_classes)):
            raise BuildError(
                f"{path}: {MAPPING_KEYS[split][1]} with base {base} gives labels in "
                f"[{value.min()}, {value.max()}], outside [0, {num_classes or 'inf'})"
            )
    return IndexMapping(filenames, labels_0, synsets, base, path)


def _label_base(path, names, labels, synsets, label_base) -> int:
    if label_base in (0, 1, "0", "1"):
        return int(label_base)
    if label_base != "auto":
        raise BuildError(f"label_base must be 'auto', 0 or 1, got {label_base!r}")
    if synsets:
        rank = {s: i for i, s in enumerate(synsets)}
        expected = np.asarray(
            [rank.get(m.group(1), -9) if (m := _TRAIN_NAME.match(n)) else -9
             for n in names.tolist()], np.int64)
        agree = [float(np.mean(labels - base == expected)) if len(labels) else 0.0
                 for base in (0, 1)]
        if max(agree) > 0.5:
            return int(np.argmax(agree))
    if len(labels) and labels.min() == 0:
        return 0
    raise BuildError(
        f"{path}: cannot tell whether tr_labels are 0- or 1-based (the filenames do not carry "
        "synsets that agree with them); give `label_base`=0 or 1"
    )
