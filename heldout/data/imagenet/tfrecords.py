"""Indexed TFRecord image datasets: the ImageNet shards of the released ResNet-50 runs.

The ImageNet runs (Feldman & Zhang, 2020) were trained from TFRecord shards (train: 1,024
shards, 1,281,167 images; validation, used as the ``test`` split: 128 shards, 50,000 images) of
`tf.train.Example`s with the features

- ``image/encoded``: JPEG bytes (RGB or grayscale),
- ``image/class/label``: int64, 1-based class (the sorted order of the 1,000 synsets),
- ``index``: int64, the example's 0-based position in its split (what aux arrays index),
- ``image/filename``: bytes, the image's basename, e.g. ``n01440764_10026.JPEG``.

`heldout build-imagenet` (`heldout.data.imagenet.build`) writes such shards from the ILSVRC-2012
files and the published filename-to-index mapping; `load_tfrecord_dataset` reads them back as a
dataset with the interface of `heldout.data.ArrayDataset` (``name``, ``num_classes``,
``image_shape``, ``num_examples(split)``, ``split_labels(split)``, ``batches(split, batch_size)``).

Evaluation preprocessing (`EvalPreprocessing`, from the issue describing the release): decode
the JPEG to RGB; centre crop a square of side ``int(224 / (224 + 32) * min(height, width))`` at
offsets ``((size - crop) + 1) // 2``; bilinear resize to 224x224 (`tf.image.resize`, half-pixel
centres, no antialiasing); scale to [0, 1]; subtract the per-channel mean (0.485, 0.456, 0.406)
and divide by the standard deviation (0.229, 0.224, 0.225). Training preprocessing: a random
crop covering 8%-100% of the image with aspect ratio 3/4-4/3, bilinear resize to 224x224, a
random horizontal flip, the same normalisation.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from heldout.data.arrays import Batch
from heldout.data.preprocessing import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB, InputPreprocessing
from heldout.errors import DatasetError, DatasetSplitError
from heldout.npzio import load_npz, require

#: Shard file name prefix of each split: the release's ``test`` split is ILSVRC's validation set.
SHARD_PREFIX = {"train": "train", "test": "validation"}
#: Labels and shard metadata written by `heldout build-imagenet` next to the shards.
LABELS_FILE = "labels.npz"
IMAGENET_NUM_CLASSES = 1000
MEAN_RGB = IMAGENET_MEAN_RGB
STDDEV_RGB = IMAGENET_STDDEV_RGB


@dataclasses.dataclass(frozen=True)
class FeatureNames:
    """Names of the `tf.train.Example` features of a shard.

    Attributes:
      image: encoded JPEG bytes.
      label: int64 class; ``label - label_offset`` is the 0-based class.
      index: int64, 0-based position of the example in its split.
      filename: bytes, the image's basename.
      label_offset: subtracted from the stored label (1 for the release's 1-based labels).
    """

    image: str = "image/encoded"
    label: str = "image/class/label"
    index: str = "index"
    filename: str = "image/filename"
    label_offset: int = 1


DEFAULT_FEATURES = FeatureNames()


@dataclasses.dataclass(frozen=True)
class EvalPreprocessing:
    """Evaluation (and training) image preprocessing parameters.

    Attributes:
      image_size: side of the square model input, in pixels.
      crop_padding: the centre crop's side is ``image_size / (image_size + crop_padding)`` times
        the shorter image side (truncated to an integer).
      mean, std: per-channel normalisation of pixels scaled to [0, 1].
      dct_method: `tf.io.decode_jpeg`'s ``dct_method``: ``""`` is TensorFlow's default (the
        fast integer DCT; what a TF input pipeline gets unless it asks otherwise),
        ``"INTEGER_ACCURATE"`` gives the same pixels as libjpeg's default (e.g. Pillow).
        The two differ by a few grey levels per pixel.
      fused_crop: decode only the crop window (`tf.image.decode_and_crop_jpeg`). Faster, but the
        pixels next to the crop's border may differ (chroma upsampling) from decoding the whole
        image and cropping, which is what the default does.
    """

    image_size: int = 224
    crop_padding: int = 32
    mean: tuple[float, float, float] = MEAN_RGB
    std: tuple[float, float, float] = STDDEV_RGB
    dct_method: str = ""
    fused_crop: bool = False

    def input_preprocessing(self) -> InputPreprocessing:
        """The crop, resize, scaling and normalisation as `heldout.data.preprocessing` records
        them (the JPEG decoding options are not part of it: they act before the uint8 image)."""
        return InputPreprocessing(255.0, tuple(self.mean), tuple(self.std),
                                  resize=self.image_size, crop_padding=self.crop_padding)


DEFAULT_PREPROCESSING = EvalPreprocessing()


def center_crop_window(height: int, width: int, pre: EvalPreprocessing = DEFAULT_PREPROCESSING):
    """The evaluation crop ``(offset_y, offset_x, side)`` of an image, in pixels (numpy or TF).

    ``side = int(image_size / (image_size + crop_padding) * min(height, width))``, offsets
    ``((height - side) + 1) // 2`` and ``((width - side) + 1) // 2``.
    """
    if not isinstance(height, tf.Tensor):  # the one formula for Python numbers
        return pre.input_preprocessing().crop_window(height, width)
    shorter = tf.cast(tf.minimum(height, width), tf.float32)
    side = tf.cast(pre.image_size / (pre.image_size + pre.crop_padding) * shorter, tf.int32)
    return ((height - side) + 1) // 2, ((width - side) + 1) // 2, side


def _normalize(image: tf.Tensor, pre: EvalPreprocessing) -> tf.Tensor:
    image = image / 255.0
    return (image - tf.constant(pre.mean, tf.float32)) / tf.constant(pre.std, tf.float32)


def _resize(image: tf.Tensor, pre: EvalPreprocessing) -> tf.Tensor:
    image = tf.image.resize(image, [pre.image_size, pre.image_size], method="bilinear")
    return tf.ensure_shape(image, [pre.image_size, pre.image_size, 3])


def preprocess_for_eval(
    encoded: tf.Tensor, pre: EvalPreprocessing = DEFAULT_PREPROCESSING
) -> tf.Tensor:
    """Centre crop, resize and normalisation of one encoded JPEG (see the module docstring).

    Args:
      encoded: string scalar, JPEG bytes (RGB, grayscale or CMYK).
      pre: preprocessing parameters.

    Returns:
      float32 [image_size, image_size, 3], normalised pixels.
    """
    if pre.fused_crop:
        shape = tf.io.extract_jpeg_shape(encoded)
        oy, ox, side = center_crop_window(shape[0], shape[1], pre)
        image = tf.image.decode_and_crop_jpeg(
            encoded, tf.stack([oy, ox, side, side]), channels=3, dct_method=pre.dct_method
        )
    else:
        image = tf.io.decode_jpeg(encoded, channels=3, dct_method=pre.dct_method)
        shape = tf.shape(image)
        oy, ox, side = center_crop_window(shape[0], shape[1], pre)
        image = image[oy : oy + side, ox : ox + side]
    return _normalize(_resize(image, pre), pre)


def preprocess_for_train(
    encoded: tf.Tensor, pre: EvalPreprocessing = DEFAULT_PREPROCESSING, seed: int | None = None
) -> tf.Tensor:
    """Random-area crop (8%-100% of the image, aspect ratio 3/4-4/3), resize, random
    horizontal flip and normalisation of one encoded JPEG.

    When no valid crop is found in 10 attempts the whole image is used.

    Returns:
      float32 [image_size, image_size, 3].
    """
    image = tf.io.decode_jpeg(encoded, channels=3, dct_method=pre.dct_method)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
        min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
        seed=seed,
    )
    image = tf.slice(image, begin, size)
    image = tf.image.random_flip_left_right(_resize(image, pre), seed=seed)
    return _normalize(image, pre)


@dataclasses.dataclass(frozen=True)
class TFRecordImageDataset:
    """Splits of indexed TFRecord shards, read with tf.data (build with `load_tfrecord_dataset`).

    Attributes:
      name: dataset name, e.g. ``imagenet2012`` (ResNet-50 is its default architecture).
      num_classes: number of classes.
      files: split -> shard paths, in order.
      labels: split -> int64 [n], 0-based labels in `index` order (from the build's
        ``labels.npz``, the published mapping, or a scan of the shards).
      features: feature names.
      preprocessing: evaluation preprocessing.
      shard_ranges: split -> int64 [num_shards, 2], the ``[first, end)`` index range of each
        shard when known (shards holding no requested index are then skipped).
      source: the directory, for messages.
    """

    name: str
    num_classes: int
    files: Mapping[str, tuple[str, ...]]
    labels: Mapping[str, np.ndarray]
    features: FeatureNames = DEFAULT_FEATURES
    preprocessing: EvalPreprocessing = DEFAULT_PREPROCESSING
    shard_ranges: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    source: str = ""

    @property
    def splits(self) -> list[str]:
        return list(self.files)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """[height, width, channels] of the preprocessed images."""
        size = self.preprocessing.image_size
        return (size, size, 3)

    def num_examples(self, split: str) -> int:
        return len(self.split_labels(split))

    def input_preprocessing(self) -> InputPreprocessing:
        """The evaluation preprocessing as `heldout.data.preprocessing` records it."""
        return self.preprocessing.input_preprocessing()

    def split_labels(self, split: str) -> np.ndarray:
        """int64 [n]: 0-based labels of a split in `index` order."""
        if split not in self.labels:
            raise DatasetSplitError(
                f"{self.source or self.name}: no split {split!r}; it has {self.splits}")
        return self.labels[split]

    def _parse(self, record: tf.Tensor, with_filename: bool) -> dict[str, tf.Tensor]:
        f = self.features
        spec = {
            f.image: tf.io.FixedLenFeature([], tf.string),
            f.label: tf.io.FixedLenFeature([], tf.int64),
            f.index: tf.io.FixedLenFeature([], tf.int64),
        }
        if with_filename:
            spec[f.filename] = tf.io.FixedLenFeature([], tf.string, default_value="")
        example = tf.io.parse_single_example(record, spec)
        label = example[f.label] - f.label_offset
        out = {"encoded": example[f.image], "label": label, "index": example[f.index]}
        if with_filename:
            out["filename"] = example[f.filename]
        return out

    def _files(self, split: str, indices: np.ndarray | None) -> list[str]:
        if split not in self.files:
            raise DatasetSplitError(
                f"{self.source or self.name}: no split {split!r}; it has {self.splits}")
        files = list(self.files[split])
        ranges = self.shard_ranges.get(split)
        if indices is None or ranges is None or len(ranges) != len(files):
            return files
        wanted = np.unique(indices)
        keep = []
        for path, (first, end) in zip(files, ranges, strict=True):
            lo = np.searchsorted(wanted, first)
            if lo < len(wanted) and wanted[lo] < end:
                keep.append(path)
        return keep

    def as_tf_dataset(
        self,
        split: str,
        batch_size: int | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        training: bool = False,
        with_filename: bool = False,
        shuffle_buffer: int = 10_000,
        seed: int | None = None,
        num_parallel_calls: int = tf.data.AUTOTUNE,
    ) -> tf.data.Dataset:
        """A tf.data pipeline over a split: parse, restrict, decode and preprocess in parallel.

        Args:
          split: ``train`` or ``test`` (or any split of `files`).
          batch_size: batch the examples (the last batch may be smaller); None: unbatched.
          indices: keep only these examples, each once (a `tf.lookup.StaticHashTable` lookup
            per example, before decoding; shards whose index range holds none of them are not
            read).
          training: training preprocessing, files and examples shuffled; otherwise evaluation
            preprocessing in shard order (`index` order for shards written by build-imagenet).
          with_filename: also yield ``filename`` (string).
          shuffle_buffer: examples in the shuffle buffer when `training`.
          seed: seed of the shuffles and random crops when `training`.
          num_parallel_calls: parallel decoding calls.

        Returns:
          Elements ``{"image": float32 [..., size, size, 3], "label": int64 (0-based),
          "index": int64[, "filename": string]}``.
        """
        idx = None if indices is None else np.asarray(indices, np.int64).reshape(-1)
        files = self._files(split, idx)
        if idx is not None and not len(idx):
            files = []
        files = tf.constant(files, dtype=tf.string, shape=[len(files)])
        if training:
            ds = tf.data.Dataset.from_tensor_slices(files).shuffle(files.shape[0] or 1, seed=seed)
            ds = ds.interleave(
                lambda f: tf.data.TFRecordDataset(f, buffer_size=8 << 20),
                cycle_length=min(16, max(files.shape[0], 1)),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=False,
            )
        else:
            ds = tf.data.TFRecordDataset(files, buffer_size=8 << 20)
        ds = ds.map(lambda r: self._parse(r, with_filename), num_parallel_calls=tf.data.AUTOTUNE)
        if idx is not None and len(idx):
            keys = np.unique(idx)
            table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(keys), tf.ones(len(keys), dtype=tf.int64)
                ),
                default_value=0,
            )
            ds = ds.filter(lambda ex: table.lookup(ex["index"]) > 0)
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed)
        pre = self.preprocessing
        f = self.features
        message = (
            f"feature {f.label!r} minus {f.label_offset} must lie in [0, {self.num_classes})"
        )

        def decode(ex):
            encoded = ex.pop("encoded")
            if training:
                image = preprocess_for_train(encoded, pre, seed)
            else:
                image = preprocess_for_eval(encoded, pre)
            label = ex.pop("label")
            with tf.control_dependencies([
                tf.debugging.assert_non_negative(label, message=message),
                tf.debugging.assert_less(label, tf.constant(self.num_classes, tf.int64),
                                         message=message),
            ]):
                label = tf.identity(label)
            return {"image": image, "label": label, **ex}

        ds = ds.map(decode, num_parallel_calls=num_parallel_calls, deterministic=not training)
        if batch_size is not None:
            ds = ds.batch(batch_size)
        return ds.prefetch(tf.data.AUTOTUNE)

    def batches(
        self, split: str, batch_size: int, indices: np.ndarray | None = None
    ) -> Iterator[Batch]:
        """Yields evaluation batches of a split (or of the examples at `indices`) in shard order.

        Unlike `ArrayDataset.batches`, examples come in the order stored in the shards (index
        order for shards written by build-imagenet), each once, not in the order of `indices`;
        use `Batch.index`.

        Raises:
          DatasetError: a shard is unreadable, lacks a feature or holds a label outside
            ``[0, num_classes)`` after the offset.
        """
        ds = self.as_tf_dataset(split, batch_size, indices)
        try:
            for element in ds.as_numpy_iterator():
                yield Batch(
                    image=element["image"],
                    label=element["label"].astype(np.int64),
                    index=element["index"].astype(np.int64),
                )
        except tf.errors.OpError as e:
            raise DatasetError(
                f"{self.source or self.name}: split {split!r}: reading the shards failed "
                f"(features {dataclasses.asdict(self.features)}): {e.message}"
            ) from e


# --------------------------------------------------------------------------------------------
# Loading.


def shard_files(tfrecord_dir: str, prefix: str) -> list[str]:
    """The shards ``<prefix>-<i>-of-<n>`` of a directory, sorted, checked to be complete.

    Raises:
      DatasetError: no shard, or shards missing from ``0..n-1``.
    """
    files = sorted(glob.glob(os.path.join(glob.escape(tfrecord_dir), f"{prefix}-*-of-*")))
    if not files:
        raise DatasetError(
            f"{tfrecord_dir}: no shards named {prefix}-<i>-of-<n> (build them with "
            "`heldout build-imagenet`)"
        )
    totals = {os.path.basename(f).rsplit("-of-", 1)[-1] for f in files}
    if len(totals) == 1 and totals.pop().isdigit():
        total = int(os.path.basename(files[0]).rsplit("-of-", 1)[-1])
        if len(files) != total:
            raise DatasetError(
                f"{tfrecord_dir}: {len(files)} of {total} {prefix} shards present; the build is "
                "incomplete (rerun `heldout build-imagenet`, it resumes)"
            )
    return files


def check_features(path: str, features: FeatureNames) -> None:
    """Reads the first example of a shard and checks that it has the expected features.

    Raises:
      DatasetError: unreadable shard or missing features (naming the features found).
    """
    try:
        record = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as e:
        raise DatasetError(f"{path}: unreadable TFRecord file ({e.message})") from e
    if record is None:
        return
    try:
        example = tf.train.Example.FromString(record.numpy())
    except Exception as e:  # protobuf's DecodeError
        raise DatasetError(f"{path}: not a tf.train.Example record ({e})") from e
    found = set(example.features.feature)
    wanted = [features.image, features.label, features.index]
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DatasetError(
            f"{path}: examples lack feature(s) {missing}; they have {sorted(found)} (set the "
            "feature names with FeatureNames)"
        )


def scan_labels(files: Sequence[str], features: FeatureNames, desc: str = "") -> np.ndarray:
    """Reads ``index`` and label of every example (no image decoding): int64 [n] labels in
    `index` order.

    Raises:
      DatasetError: indices that are not a permutation of ``0..n-1``.
    """
    spec = {
        features.label: tf.io.FixedLenFeature([], tf.int64),
        features.index: tf.io.FixedLenFeature([], tf.int64),
    }
    ds = tf.data.TFRecordDataset(list(files), num_parallel_reads=tf.data.AUTOTUNE)
    ds = ds.map(lambda r: tf.io.parse_single_example(r, spec), tf.data.AUTOTUNE).batch(4096)
    index, label = [], []
    for batch in tqdm(ds.as_numpy_iterator(), desc=f"scan labels {desc}", unit="batch"):
        index.append(batch[features.index])
        label.append(batch[features.label])
    index = np.concatenate(index) if index else np.zeros(0, np.int64)
    label = np.concatenate(label) if label else np.zeros(0, np.int64)
    n = len(index)
    if n and (index.min() < 0 or index.max() >= n or len(np.unique(index)) != n):
        raise DatasetError(
            f"{desc}: the {features.index!r} feature of the {n} examples is not a permutation of "
            f"0..{n - 1} (min {index.min()}, max {index.max()}, {len(np.unique(index))} distinct)"
        )
    out = np.empty(n, np.int64)
    out[index] = label - features.label_offset
    return out


def _labels_from_file(path: str, splits: Sequence[str]) -> tuple[dict, dict, int | None]:
    arrays = load_npz(path)
    get = functools.partial(require, arrays, source=path, sizes={},
                            what="a labels.npz written by heldout build-imagenet")
    labels, ranges = {}, {}
    for split in splits:
        labels[split] = get(f"{split}__label", "iu", (f"n_{split}",)).astype(np.int64)
        if f"{split}__shard_range" in arrays:
            ranges[split] = get(f"{split}__shard_range", "iu", (None, 2)).astype(np.int64)
    num_classes = int(get("__num_classes", "iu", ())) if "__num_classes" in arrays else None
    return labels, ranges, num_classes


def load_tfrecord_dataset(
    tfrecord_dir: str | os.PathLike,
    splits: Sequence[str] = ("train", "test"),
    index_npz: str | os.PathLike | None = None,
    name: str = "imagenet2012",
    num_classes: int | None = None,
    features: FeatureNames = DEFAULT_FEATURES,
    preprocessing: EvalPreprocessing = DEFAULT_PREPROCESSING,
    shard_prefix: Mapping[str, str] | None = None,
) -> TFRecordImageDataset:
    """Opens indexed TFRecord shards ``<dir>/<prefix>-<i>-of-<n>`` as a dataset.

    Labels (in `index` order) come from, in this order: ``<dir>/labels.npz`` written by
    `heldout build-imagenet`; the published mapping `index_npz` (``tr_labels``/``tt_labels``);
    a scan of the shards' label and index features (no image decoding, but every shard is read).

    Args:
      tfrecord_dir: the shard directory.
      splits: splits to open (``train``: ``train-*`` shards, ``test``: ``validation-*``).
      index_npz: the published mapping ``imagenet_index.npz``, used for the labels when the
        directory has no ``labels.npz``.
      name: dataset name (``imagenet`` in it selects ResNet-50 as the default architecture).
      num_classes: default: from ``labels.npz`` or the mapping, else 1000.
      features: feature names in the shards.
      preprocessing: evaluation preprocessing.
      shard_prefix: split -> shard file prefix (default `SHARD_PREFIX`).

    Raises:
      DatasetError: missing or incomplete shards, features not found.
      NpzError: a bad ``labels.npz`` or mapping.
    """
    tfrecord_dir = os.fspath(tfrecord_dir)
    if not os.path.isdir(tfrecord_dir):
        raise DatasetError(f"{tfrecord_dir}: no such directory")
    prefixes = {**SHARD_PREFIX, **(shard_prefix or {})}
    files = {}
    for split in splits:
        if split not in prefixes:
            raise DatasetError(f"no shard prefix for split {split!r}; give shard_prefix")
        files[split] = tuple(shard_files(tfrecord_dir, prefixes[split]))
        check_features(files[split][0], features)
    labels_path = os.path.join(tfrecord_dir, LABELS_FILE)
    ranges: dict[str, np.ndarray] = {}
    if os.path.isfile(labels_path):
        labels, ranges, stored_classes = _labels_from_file(labels_path, splits)
        ranges = {s: r for s, r in ranges.items() if len(r) == len(files[s])}
    elif index_npz is not None:
        from heldout.data.imagenet.mapping import read_index_mapping

        mapping = read_index_mapping(index_npz)
        labels = {s: mapping.labels(s) for s in splits}
        stored_classes = mapping.num_classes
    else:
        labels = {s: scan_labels(files[s], features, f"{tfrecord_dir} {s}") for s in splits}
        stored_classes = None
    num_classes = num_classes or stored_classes or IMAGENET_NUM_CLASSES
    for split, value in labels.items():
        if len(value) and (value.min() < 0 or value.max() >= num_classes):
            raise DatasetError(
                f"{tfrecord_dir}: split {split!r}: labels must lie in [0, {num_classes}), found "
                f"[{value.min()}, {value.max()}]"
            )
    return TFRecordImageDataset(
        name, int(num_classes), files, labels, features, preprocessing, ranges, tfrecord_dir
    )
