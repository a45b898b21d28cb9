"""ImageNet data path: build-imagenet on a tiny ILSVRC-like tree, reading the shards back,
evaluation preprocessing against an independent numpy/PIL computation, and a ResNet-50
checkpoint in the release's key layout cross-checked through `heldout verify`."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from heldout.cli import main
from heldout.data import DatasetSpec, label_hash, load_dataset, load_labels
from heldout.data.fingerprint import fingerprint_dataset
from heldout.data.imagenet.build import as_rgb_jpeg, shard_ranges
from heldout.data.imagenet.mapping import BuildError, read_index_mapping
from heldout.data.imagenet.tfrecords import (
    DatasetError,
    EvalPreprocessing,
    FeatureNames,
    load_tfrecord_dataset,
)
from heldout.npzio import NpzError

SHARED = os.path.join(os.path.dirname(__file__), "data")
SYNSETS = ["n01440764", "n01443537", "n01484850"]
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
# (synset, name, height, width, kind): kind is how the file is stored on disk.
TRAIN = [
    ("n01440764", "n01440764_10026.JPEG", 45, 60, "rgb"),
    ("n01440764", "n01440764_2708.JPEG", 52, 40, "cmyk"),
    ("n01443537", "n01443537_100.JPEG", 64, 48, "rgb"),
    ("n01443537", "n01443537_2207.JPEG", 40, 56, "png"),
    ("n01484850", "n01484850_17.JPEG", 50, 50, "gray"),
    ("n01484850", "n01484850_4611.JPEG", 37, 83, "rgb"),
]
VAL = [  # (name, synset, height, width)
    ("ILSVRC2012_val_00000001.JPEG", "n01484850", 61, 47),
    ("ILSVRC2012_val_00000002.JPEG", "n01440764", 48, 70),
    ("ILSVRC2012_val_00000003.JPEG", "n01443537", 33, 33),
    ("ILSVRC2012_val_00000004.JPEG", "n01440764", 90, 57),
]


def _image(rng, height, width) -> np.ndarray:
    """A smooth random RGB image (JPEG-friendly, so decoders agree closely)."""
    base = rng.integers(0, 256, (height // 6 + 2, width // 6 + 2, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(base).resize((width, height), Image.BILINEAR))
    noise = rng.integers(-12, 13, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def _save(array: np.ndarray, path: str, kind: str) -> None:
    image = Image.fromarray(array)
    if kind == "cmyk":
        image.convert("CMYK").save(path, format="JPEG", quality=92)
    elif kind == "png":
        image.save(path, format="PNG")  # PNG data under a .JPEG name
    elif kind == "gray":
        image.convert("L").save(path, format="JPEG", quality=92)
    else:
        image.save(path, format="JPEG", quality=92)


def make_tree(root, val_in_folders: bool = False, label_base: int = 0):
    """Writes train/<synset>/<name>, val/[<synset>/]<name> and a mapping npz whose order is not
    the sorted filename order. Returns (train_dir, val_dir, mapping_path, mapping arrays)."""
    rng = np.random.default_rng(5)
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    pixels = {}
    for synset, name, h, w, kind in TRAIN:
        os.makedirs(os.path.join(train_dir, synset), exist_ok=True)
        pixels[name] = _image(rng, h, w)
        _save(pixels[name], os.path.join(train_dir, synset, name), kind)
    for name, synset, h, w in VAL:
        folder = os.path.join(val_dir, synset) if val_in_folders else val_dir
        os.makedirs(folder, exist_ok=True)
        pixels[name] = _image(rng, h, w)
        _save(pixels[name], os.path.join(folder, name), "rgb")
    tr_order = [3, 0, 5, 1, 4, 2]  # index -> TRAIN entry
    tt_order = [2, 0, 3, 1]
    arrays = {
        "tr_filenames": np.array([TRAIN[i][1] for i in tr_order]),
        "tr_labels": np.array([SYNSETS.index(TRAIN[i][0]) + label_base for i in tr_order]),
        "tt_filenames": np.array([VAL[i][0] for i in tt_order]),
        "tt_labels": np.array([SYNSETS.index(VAL[i][1]) + label_base for i in tt_order]),
        "tr_mem": rng.random(len(TRAIN)),
    }
    mapping = os.path.join(root, "imagenet_index.npz")
    np.savez(mapping, **arrays)
    return train_dir, val_dir, mapping, arrays, pixels


def build(train_dir, val_dir, mapping, out, *extra) -> int:
    argv = ["build-imagenet", "--index_npz", mapping, "--out", out, "--train_shards", "2",
            "--val_shards", "1", "--num_workers", "2", *extra]
    if train_dir:
        argv += ["--train_dir", train_dir]
    if val_dir:
        argv += ["--val_dir", val_dir]
    return main(argv)


def read_records(path: str) -> list[tf.train.Example]:
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def feature(example, key):
    f = example.features.feature[key]
    return f.int64_list.value[0] if f.int64_list.value else f.bytes_list.value[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ilsvrc"))
    train_dir, val_dir, mapping, arrays, pixels = make_tree(root)
    out = os.path.join(root, "shards")
    status = build(train_dir, val_dir, mapping, out)
    return {"root": root, "train_dir": train_dir, "val_dir": val_dir, "mapping": mapping,
            "arrays": arrays, "pixels": pixels, "out": out, "status": status}


def test_build_writes_indexed_shards(tiny, capsys):
    assert tiny["status"] == 0
    out, arrays = tiny["out"], tiny["arrays"]
    names = sorted(n for n in os.listdir(out) if not n.startswith("."))
    assert names == ["build_config.json", "build_report.json", "labels.npz",
                     "train-00000-of-00002", "train-00001-of-00002", "validation-00000-of-00001"]
    for split, prefix, n_shards, key in (("train", "train", 2, "tr"), ("test", "validation", 1,
                                                                       "tt")):
        seen = []
        for shard, (first, end) in enumerate(shard_ranges(len(arrays[f"{key}_labels"]),
                                                          n_shards)):
            records = read_records(os.path.join(out, f"{prefix}-{shard:05d}-of-{n_shards:05d}"))
            index = [feature(r, "index") for r in records]
            assert index == list(range(first, end)), split  # contiguous, in index order
            seen += index
            for r, i in zip(records, index, strict=True):
                assert feature(r, "image/filename").decode() == arrays[f"{key}_filenames"][i]
                assert feature(r, "image/class/label") == arrays[f"{key}_labels"][i] + 1
                assert feature(r, "image/class/synset").decode() == SYNSETS[
                    arrays[f"{key}_labels"][i]]
        assert seen == list(range(len(arrays[f"{key}_labels"])))
    report = json.load(open(os.path.join(out, "build_report.json")))
    assert sorted((r["filename"], r["reason"]) for r in report["reencoded"]) == [
        ("n01440764_2708.JPEG", "CMYK JPEG"), ("n01443537_2207.JPEG", "PNG data")]
    assert report["missing"] == report["extra"] == report["disagreements"] == []


def test_reencoded_and_copied_bytes(tiny):
    by_name = {}
    for name in os.listdir(tiny["out"]):
        if name.startswith("train-"):
            for r in read_records(os.path.join(tiny["out"], name)):
                by_name[feature(r, "image/filename").decode()] = feature(r, "image/encoded")
    for synset, name, _, _, kind in TRAIN:
        stored = by_name[name]
        source = open(os.path.join(tiny["train_dir"], synset, name), "rb").read()
        if kind in ("rgb", "gray"):
            assert stored == source, name  # copied byte for byte
            continue
        assert stored != source and stored[:3] == b"\xff\xd8\xff", name
        image = Image.open(io.BytesIO(stored))
        assert image.format == "JPEG" and image.mode == "RGB"
        original = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"), np.float64)
        # Re-encoding (quality 95, 4:4:4) loses only JPEG quantisation of these noisy images:
        # mean error under 5 grey levels, where an inverted CMYK or swapped channels give > 50.
        assert np.abs(np.asarray(image, np.float64) - original).mean() < 5.0, name
        decoded = tf.io.decode_jpeg(stored, channels=3)  # what the reader decodes
        assert decoded.shape == original.shape


def test_as_rgb_jpeg_refuses_non_images():
    with pytest.raises(Exception, match="cannot identify"):
        as_rgb_jpeg(b"not an image at all")


def _np_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (as tf.image.resize), float64."""

    def axis(n_in):
        x = (np.arange(size) + 0.5) * (n_in / size) - 0.5
        x0 = np.floor(x).astype(int)
        frac = x - x0
        return np.clip(x0, 0, n_in - 1), np.clip(x0 + 1, 0, n_in - 1), frac

    y0, y1, fy = axis(image.shape[0])
    x0, x1, fx = axis(image.shape[1])
    fx = fx[None, :, None]
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return top * (1 - fy[:, None, None]) + bottom * fy[:, None, None]


def reference_eval(pixels: np.ndarray, size: int = 224) -> np.ndarray:
    """Independent evaluation preprocessing: crop int(224/256 * shorter side) at offsets
    ((n - crop) + 1) // 2, bilinear resize, /255, (x - mean) / std, all in float64."""
    h, w = pixels.shape[:2]
    crop = int(size / (size + 32) * min(h, w))
    oy, ox = ((h - crop) + 1) // 2, ((w - crop) + 1) // 2
    window = pixels[oy : oy + crop, ox : ox + crop].astype(np.float64)
    return (_np_bilinear(window, size) / 255.0 - MEAN) / STD


# float32 pipeline against float64 reference on identical decoded pixels: rounding only
# (largest difference seen: 2e-6, in normalised units where one grey level is ~0.017).
EVAL_ATOL = 2e-5


def test_eval_preprocessing_matches_pil_and_numpy(tiny):
    names = tiny["arrays"]["tt_filenames"]
    pil = {
        name: np.asarray(Image.open(os.path.join(tiny["val_dir"], name)).convert("RGB"))
        for name in names
    }
    # INTEGER_ACCURATE decodes exactly as Pillow (libjpeg's default DCT).
    accurate = load_tfrecord_dataset(
        tiny["out"], ("test",), preprocessing=EvalPreprocessing(dct_method="INTEGER_ACCURATE"))
    batches = list(accurate.batches("test", 3))
    assert [len(b.index) for b in batches] == [3, 1]
    for batch in batches:
        assert batch.image.dtype == np.float32 and batch.image.shape[1:] == (224, 224, 3)
        for image, index in zip(batch.image, batch.index, strict=True):
            expected = reference_eval(pil[names[index]])
            np.testing.assert_allclose(image, expected, rtol=0, atol=EVAL_ATOL)
    # fused_crop decodes only the window: the same up to chroma upsampling at its border
    # (mean difference <= 0.002 here; a crop one pixel off gives > 0.15).
    fused = load_tfrecord_dataset(tiny["out"], ("test",), preprocessing=EvalPreprocessing(
        dct_method="INTEGER_ACCURATE", fused_crop=True))
    for batch in fused.batches("test", 4):
        for image, index in zip(batch.image, batch.index, strict=True):
            assert np.abs(image - reference_eval(pil[names[index]])).mean() < 0.02
    # The default decoder (TensorFlow's fast DCT): same crop/resize/normalisation of its pixels.
    default = load_dataset(DatasetSpec(tfrecord_dir=tiny["out"]), ("test",))
    for batch in default.batches("test", 4):
        for image, index in zip(batch.image, batch.index, strict=True):
            data = open(os.path.join(tiny["val_dir"], names[index]), "rb").read()
            pixels = tf.io.decode_jpeg(data, channels=3).numpy()
            np.testing.assert_allclose(image, reference_eval(pixels), rtol=0, atol=EVAL_ATOL)
            # ... which differs from Pillow's pixels by a few grey levels at most.
            assert np.abs(pixels.astype(int) - pil[names[index]]).max() <= 8


def test_dataset_interface_labels_and_subset(tiny):
    arrays = tiny["arrays"]
    ds = load_dataset(DatasetSpec(tfrecord_dir=tiny["out"]), ("train", "test"))
    assert ds.name == "imagenet2012" and ds.num_classes == 3 and ds.image_shape == (224, 224, 3)
    assert ds.num_examples("train") == 6 and ds.num_examples("test") == 4
    np.testing.assert_array_equal(ds.split_labels("train"), arrays["tr_labels"])
    np.testing.assert_array_equal(load_labels(DatasetSpec(tfrecord_dir=tiny["out"]), "test"),
                                  arrays["tt_labels"])
    fp = fingerprint_dataset(ds)
    assert (fp.name, fp.version, fp.splits, fp.sizes) == ("imagenet2012", "", ("test", "train"),
                                                          (4, 6))
    assert fp.label_hashes == (label_hash(arrays["tt_labels"]), label_hash(arrays["tr_labels"]))
    batches = list(ds.batches("train", 4))
    index = np.concatenate([b.index for b in batches])
    label = np.concatenate([b.label for b in batches])
    np.testing.assert_array_equal(index, np.arange(6))
    np.testing.assert_array_equal(label, arrays["tr_labels"])
    # Restriction to a subset: only those examples, and only the shards holding them are read.
    subset = np.array([4, 1])
    assert ds._files("train", subset) == list(ds.files["train"])
    assert ds._files("train", np.array([4])) == [ds.files["train"][1]]
    got = list(ds.batches("train", 10, indices=np.concatenate([subset, subset])))
    assert len(got) == 1
    np.testing.assert_array_equal(got[0].index, [1, 4])  # shard order
    np.testing.assert_array_equal(got[0].label, arrays["tr_labels"][[1, 4]])
    assert list(ds.batches("train", 4, indices=[])) == []
    assert list(ds.batches("train", 4, indices=[99])) == []
    assert len(list(ds.as_tf_dataset("train", 4, indices=[99], training=True))) == 0
    full = {int(i): img for b in batches for i, img in zip(b.index, b.image, strict=True)}
    np.testing.assert_array_equal(got[0].image[1], full[4])
    filenames = [e["filename"].decode() for e in ds.as_tf_dataset(
        "test", with_filename=True).as_numpy_iterator()]
    assert filenames == arrays["tt_filenames"].tolist()


def test_training_preprocessing(tiny):
    ds = load_tfrecord_dataset(tiny["out"], ("train",))
    elements = list(ds.as_tf_dataset("train", training=True, seed=3).as_numpy_iterator())
    assert sorted(int(e["index"]) for e in elements) == list(range(6))
    lo, hi = (0 - MEAN) / STD, (1 - MEAN) / STD
    for e in elements:
        image = e["image"]
        assert image.shape == (224, 224, 3) and image.dtype == np.float32
        assert (image >= lo - 1e-5).all() and (image <= hi + 1e-5).all()
        assert e["label"] == tiny["arrays"]["tr_labels"][e["index"]]
    # Random crops differ from the deterministic centre crop.
    evals = {int(b.index[0]): b.image[0] for b in ds.batches("train", 1)}
    assert any(np.abs(e["image"] - evals[int(e["index"])]).mean() > 1e-3 for e in elements)


def test_labels_from_mapping_or_scan_when_no_labels_file(tiny, tmp_path):
    copy = str(tmp_path / "shards")
    shutil.copytree(tiny["out"], copy)
    os.remove(os.path.join(copy, "labels.npz"))
    scanned = load_tfrecord_dataset(copy, ("train", "test"))
    from_mapping = load_tfrecord_dataset(copy, ("train", "test"), index_npz=tiny["mapping"])
    for ds in (scanned, from_mapping):
        np.testing.assert_array_equal(ds.split_labels("train"), tiny["arrays"]["tr_labels"])
        np.testing.assert_array_equal(ds.split_labels("test"), tiny["arrays"]["tt_labels"])
    assert from_mapping.num_classes == 3 and scanned.num_classes == 1000


def test_bad_labels_file_is_refused(tiny, tmp_path):
    """Float labels in labels.npz were cast to int silently; now refused in one line."""
    copy = str(tmp_path / "shards")
    shutil.copytree(tiny["out"], copy)
    path = os.path.join(copy, "labels.npz")
    arrays = dict(np.load(path))
    np.savez(path, **{**arrays, "test__label": arrays["test__label"] + 0.5})
    with pytest.raises(NpzError, match=r"labels\.npz: key 'test__label': expected int array "
                                       r"\[n_test\], found float64 \[4\]$"):
        load_tfrecord_dataset(copy, ("train", "test"))
    np.savez(path, **{**arrays, "train__shard_range": np.zeros((2, 3), np.int64)})
    with pytest.raises(NpzError, match=r"key 'train__shard_range': expected int array "
                                       r"\[\*, 2\], found int64 \[2, 3\]$"):
        load_tfrecord_dataset(copy, ("train", "test"))


def test_bad_shards_give_clear_errors(tiny, tmp_path):
    with pytest.raises(DatasetError, match=r"lack feature\(s\) \['idx'\]"):
        load_tfrecord_dataset(tiny["out"], ("test",), features=FeatureNames(index="idx"))
    copy = str(tmp_path / "shards")
    shutil.copytree(tiny["out"], copy)
    os.remove(os.path.join(copy, "train-00001-of-00002"))
    with pytest.raises(DatasetError, match="1 of 2 train shards present"):
        load_tfrecord_dataset(copy, ("train",))
    with pytest.raises(DatasetError, match="no shards named validation"):
        load_tfrecord_dataset(str(tmp_path), ("test",))
    # Labels beyond num_classes are caught while reading, not silently passed on.
    ds = load_tfrecord_dataset(tiny["out"], ("test",), num_classes=3)
    small = dataclasses.replace(ds, num_classes=1, labels={"test": np.zeros(4, np.int64)})
    with pytest.raises(DatasetError, match=r"must lie in \[0, 1\)"):
        list(small.batches("test", 4))


def test_resume_skips_complete_shards(tiny, tmp_path, capsys):
    out = str(tmp_path / "shards")
    shutil.copytree(tiny["out"], out)
    stamps = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}
    capsys.readouterr()
    assert build(tiny["train_dir"], tiny["val_dir"], tiny["mapping"], out) == 0
    assert "0 written, 3 already complete" in capsys.readouterr().out
    for name in ("train-00000-of-00002", "train-00001-of-00002", "validation-00000-of-00001"):
        assert os.stat(os.path.join(out, name)).st_mtime_ns == stamps[name]
    # An interrupted shard: its temporary file is ignored and the shard is written again.
    victim = os.path.join(out, "train-00001-of-00002")
    before = open(victim, "rb").read()
    os.remove(victim)
    open(os.path.join(out, ".train-00001-of-00002.abc.tmp"), "wb").write(b"half")
    assert build(tiny["train_dir"], tiny["val_dir"], tiny["mapping"], out) == 0
    assert "1 written, 2 already complete" in capsys.readouterr().out
    assert open(victim, "rb").read() == before
    # Other settings into the same directory are refused.
    assert build(tiny["train_dir"], tiny["val_dir"], tiny["mapping"], out,
                 "--train_shards", "3") == 2
    assert "built with other settings" in capsys.readouterr().err


def test_report_missing_extra_and_disagreeing_files(tmp_path, capsys):
    train_dir, val_dir, mapping, arrays, _ = make_tree(str(tmp_path), val_in_folders=True)
    os.remove(os.path.join(train_dir, "n01484850", "n01484850_17.JPEG"))  # missing
    shutil.copy(os.path.join(train_dir, "n01440764", "n01440764_10026.JPEG"),
                os.path.join(train_dir, "n01440764", "n01440764_99.JPEG"))  # extra
    wrong = os.path.join(val_dir, "n01443537")
    shutil.move(os.path.join(val_dir, "n01440764", "ILSVRC2012_val_00000002.JPEG"), wrong)
    out = str(tmp_path / "shards")
    assert build(train_dir, val_dir, mapping, out) == 1
    printed = capsys.readouterr().out
    assert "1 files in the mapping missing on disk" in printed
    assert "1 files on disk not in the mapping" in printed
    assert "1 synset disagreements with the mapping" in printed
    report = json.load(open(os.path.join(out, "build_report.json")))
    missing_index = int(np.flatnonzero(arrays["tr_filenames"] == "n01484850_17.JPEG")[0])
    assert report["missing"] == [{"split": "train", "index": missing_index,
                                  "filename": "n01484850_17.JPEG"}]
    assert [os.path.basename(p) for p in report["extra"]] == ["n01440764_99.JPEG"]
    (disagree,) = report["disagreements"]
    assert disagree["filename"] == "ILSVRC2012_val_00000002.JPEG"
    assert disagree["synset"] == "n01440764" and "n01443537" in disagree["found"]
    shard = 0 if missing_index < 3 else 1
    assert report["shards_incomplete"] == [f"train-{shard:05d}-of-00002"]
    assert not os.path.exists(os.path.join(out, f"train-{shard:05d}-of-00002"))
    # --allow_missing writes the shard without the missing file.
    assert build(train_dir, val_dir, mapping, out, "--allow_missing") == 1
    ds = load_tfrecord_dataset(out, ("train",))
    index = np.concatenate([b.index for b in ds.batches("train", 8)])
    np.testing.assert_array_equal(index, np.delete(np.arange(6), missing_index))
    assert ds.num_examples("train") == 6  # labels still cover the whole split


def test_mapping_label_base_and_errors(tmp_path):
    _, _, mapping, arrays, _ = make_tree(str(tmp_path), label_base=1)
    read = read_index_mapping(mapping)
    assert read.label_base == 1 and read.synsets == tuple(SYNSETS)
    np.testing.assert_array_equal(read.labels("train"), arrays["tr_labels"] - 1)
    with pytest.raises(BuildError, match=r"base 0 gives labels in \[1, 3\], outside \[0, 3\)"):
        read_index_mapping(mapping, label_base=0)
    bad = str(tmp_path / "bad.npz")
    np.savez(bad, tr_filenames=arrays["tr_filenames"], tr_labels=arrays["tr_labels"])
    with pytest.raises(NpzError, match="missing key 'tt_filenames'"):
        read_index_mapping(bad)
    np.savez(bad, **{**arrays, "tt_labels": arrays["tt_labels"][:2]})
    with pytest.raises(NpzError, match=r"bad\.npz: key 'tt_labels': expected int array "
                                       r"\[n_test=4\], found int64 \[2\]$"):
        read_index_mapping(bad)
    np.savez(bad, **{**arrays, "tr_labels": arrays["tr_labels"].astype(np.float32)})
    with pytest.raises(NpzError, match=r"key 'tr_labels': expected int array \[n_train=\d+\], "
                                       r"found float32"):
        read_index_mapping(bad)
    np.savez(bad, **{**arrays, "tr_filenames": np.arange(len(arrays["tr_labels"]))})
    with pytest.raises(NpzError, match=r"key 'tr_filenames': expected bytes or str array "
                                       r"\[n_train\], found int64"):
        read_index_mapping(bad)


@pytest.mark.slow
def test_resnet50_checkpoint_verifies_on_tiny_imagenet(tiny, tmp_path, capsys):
    """A ResNet-50 checkpoint in the release's key layout restores and cross-checks."""
    from heldout.evaluate import make_evaluator
    from heldout.experiment import make_aux_arrays, write_aux_arrays

    ds = load_tfrecord_dataset(tiny["out"], ("train", "test"))
    evaluator = make_evaluator("resnet50", ds.num_classes, ds.image_shape)
    tf.random.set_seed(0)
    # Non-trivial BatchNorm statistics so that images get distinct predictions.
    for var in evaluator.model.variables:
        if "moving_mean" in var.name and "counter" not in var.name:
            var.assign(tf.random.normal(var.shape, stddev=0.1))
    train = evaluator.predict(ds, "train", progress=False)
    test = evaluator.predict(ds, "test", progress=False)
    experiment = tmp_path / "imagenet-resnet50"
    runs = {}
    for run_id, flip in ((0, False), (1, True)):
        run = experiment / "0.7" / str(run_id)
        tf.train.Checkpoint(
            model=evaluator.model,
            epoch=tf.Variable(np.int64(90)),
            global_step=tf.Variable(np.int64(112590 + run_id)),
        ).write(str(run / "checkpoints" / "ckpt-90"))
        test_correct = test.correctness[np.argsort(test.index)].copy()
        if flip:  # one stored correctness disagrees: a "legitimate" mismatch
            test_correct[2] = ~test_correct[2]
        aux = make_aux_arrays(np.array([0, 2, 3, 5]), train.correctness[np.argsort(
            train.index)], test_correct)
        write_aux_arrays(run / "aux_arrays.npz", aux)
        runs[run_id] = str(run)
    # The checkpoint's keys are the release's (reference dump of the original code's
    # ResNet-50 checkpoint; only the logits' class count differs).
    reference = [line.split("\t")[0] for line in open(os.path.join(
        SHARED, "reference", "checkpoint-variables", "resnet50_1000classes.tsv"))
        if not line.startswith("#")]
    written = tf.train.load_checkpoint(os.path.join(runs[0], "checkpoints", "ckpt-90"))
    keys = [k for k in written.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert sorted(keys) == sorted(reference)
    capsys.readouterr()
    # Run 0 matches everywhere; run 1 has one stored correctness flipped.
    assert main(["verify", str(experiment), "--tfrecord_dir", tiny["out"], "--split", "test"]) == 1
    printed = capsys.readouterr().out
    assert "0.7/0: epoch 90 step 112590 subset 66.7%" in printed
    assert "4/4 match\n" in printed
    assert "0.7/1: epoch 90 step 112591" in printed and "3/4 match  MISMATCH" in printed
    assert "verified 2 runs: 7 out of 8 predictions match" in printed
    assert main(["verify", runs[1], "--tfrecord_dir", tiny["out"], "--split", "test",
                 "--min_match_fraction", "0.75"]) == 0
    printed = capsys.readouterr().out
    assert "3/4 match\n" in printed and "MISMATCH" not in printed
