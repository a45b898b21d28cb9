"""Tests of heldout.experiment and heldout.npzio: layout, aux arrays, bad input."""

import os
import re
import shutil
import warnings

import numpy as np
import pytest

from heldout import experiment as ex
from heldout.data.preprocessing import InputPreprocessing
from heldout.npzio import NpzError, load_npz, save_npz_atomic

RUNS = {"0.5": [0, 7], "0.25": [3]}


def test_reference_experiment_opens(fmnist_experiment):
    exp = ex.open_experiment(fmnist_experiment, require_checkpoint=True, strict=True)
    assert exp.ratios == ["0.25", "0.5"]
    assert [r.run_id for r in exp.runs("0.5")] == [0, 7]
    assert [r.name for r in exp.runs()] == ["0.25/3", "0.5/0", "0.5/7"]
    assert exp.ratio_name(0.5) == "0.5"
    with pytest.raises(KeyError, match="no subset ratio"):
        exp.ratio_name(0.7)


def test_reference_aux_arrays(fmnist_experiment):
    aux = ex.load_aux_arrays(fmnist_experiment / "0.5" / "0" / ex.AUX_ARRAYS, 2000, 500)
    assert aux.num_train == 2000 and aux.num_test == 500
    assert aux.subset_ratio == 0.5
    mask = aux.subset_mask()
    assert mask.sum() == 1000 and mask[aux.subsample_idx].all()
    train = aux.train_correctness()
    # In dataset order: the entry at index_train[k] is correctness_train[k].
    np.testing.assert_array_equal(train[aux.index_train], aux.correctness_train)
    np.testing.assert_array_equal(train[aux.index_removed], aux.correctness_removed)
    np.testing.assert_array_equal(aux.test_correctness()[aux.index_test], aux.correctness_test)
    # The fixture's arrays are shuffled, so dataset order differs from file order.
    assert not np.array_equal(aux.index_train, np.sort(aux.index_train))


def test_reference_checkpoints_found(fmnist_experiment):
    (ckpt,) = ex.find_checkpoints(fmnist_experiment / "0.5" / "7")
    assert ckpt.epoch == 10 and ckpt.complete and ckpt.prefix.endswith("checkpoints/ckpt-10")


def _aux(n_train=20, n_test=8, seed=0):
    rng = np.random.default_rng(seed)
    subset = rng.choice(n_train, n_train // 2, replace=False)
    return ex.make_aux_arrays(subset, rng.random(n_train) < 0.7, rng.random(n_test) < 0.6)


def test_make_write_load_round_trip(tmp_path):
    aux = _aux()
    path = tmp_path / "r" / ex.AUX_ARRAYS
    ex.write_aux_arrays(path, aux)
    back = ex.load_aux_arrays(path)
    for key, value in aux.to_dict().items():
        np.testing.assert_array_equal(getattr(back, key), value)
    assert [p for p in os.listdir(tmp_path / "r")] == [ex.AUX_ARRAYS]  # no temporary left


def _write_raw(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_truncated_aux_arrays(tmp_path):
    path = tmp_path / ex.AUX_ARRAYS
    ex.write_aux_arrays(path, _aux())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NpzError, match=r"aux_arrays.npz: truncated or corrupt"):
        ex.load_aux_arrays(path)


def test_missing_key(tmp_path):
    arrays = _aux().to_dict()
    del arrays["correctness_removed"]
    _write_raw(tmp_path / "a.npz", arrays)
    match = (r"a\.npz: missing key 'correctness_removed' \(expected bool or int array "
             r"\[n_removed=10\] in an aux_arrays\.npz\); found keys \['correctness_test'")
    with pytest.raises(NpzError, match=match):
        ex.load_aux_arrays(tmp_path / "a.npz")


def test_index_not_a_permutation(tmp_path):
    arrays = _aux().to_dict()
    arrays["index_removed"] = arrays["index_removed"].copy()
    arrays["index_removed"][0] = arrays["index_train"][0]
    _write_raw(tmp_path / "a.npz", arrays)
    match = "must be a permutation of 0..19.*1 repeated and 1 missing"
    with pytest.raises(NpzError, match=match):
        ex.load_aux_arrays(tmp_path / "a.npz")
    for k, bad in enumerate((20, -1)):
        arrays["index_removed"][0] = bad
        _write_raw(tmp_path / f"{k}.npz", arrays)
        match = "index_train \\+ index_removed must be a permutation .*with 1 out of range"
        with pytest.raises(NpzError, match=match):
            ex.load_aux_arrays(tmp_path / f"{k}.npz")


def test_subsample_idx_must_match_index_train(tmp_path):
    train = _aux().to_dict()["index_train"]
    for name, subsample in (("other", _aux().to_dict()["index_removed"]),
                            ("repeat", np.r_[train[1:], train[1]]),  # as long, one missing
                            ("range", np.r_[train[1:], 20]),
                            ("negative", np.r_[train[1:], -1]),
                            ("short", train[1:])):
        arrays = _aux().to_dict()
        arrays["subsample_idx"] = subsample
        _write_raw(tmp_path / f"{name}.npz", arrays)
        with pytest.raises(NpzError, match="subsample_idx .* is not the same set"):
            ex.load_aux_arrays(tmp_path / f"{name}.npz")
    arrays = _aux().to_dict()
    arrays["subsample_idx"] = train[::-1]  # any order
    _write_raw(tmp_path / "reversed.npz", arrays)
    np.testing.assert_array_equal(ex.load_aux_arrays(tmp_path / "reversed.npz").subset_mask(),
                                  _aux().subset_mask())


def test_length_mismatch_and_dtype(tmp_path):
    arrays = _aux().to_dict()
    arrays["correctness_test"] = arrays["correctness_test"][:-1]
    _write_raw(tmp_path / "a.npz", arrays)
    match = r"key 'correctness_test': expected bool or int array \[n_test=8\], found bool \[7\]$"
    with pytest.raises(NpzError, match=match):
        ex.load_aux_arrays(tmp_path / "a.npz")
    arrays = _aux().to_dict()
    arrays["correctness_test"] = arrays["correctness_test"].astype(np.float32)
    _write_raw(tmp_path / "b.npz", arrays)
    match = "'correctness_test': expected bool or int array .*found float32"
    with pytest.raises(NpzError, match=match):
        ex.load_aux_arrays(tmp_path / "b.npz")
    # 0/1 integers are read as bool; any other integer is refused.
    arrays = _aux().to_dict()
    arrays["correctness_test"] = arrays["correctness_test"].astype(np.int8)
    _write_raw(tmp_path / "c.npz", arrays)
    back = ex.load_aux_arrays(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.correctness_test, _aux().correctness_test)
    arrays["correctness_test"][0] = 2
    _write_raw(tmp_path / "d.npz", arrays)
    with pytest.raises(NpzError, match="int8 values other than 0 and 1"):
        ex.load_aux_arrays(tmp_path / "d.npz")


def test_dataset_size_mismatch(tmp_path):
    ex.write_aux_arrays(tmp_path / "a.npz", _aux())
    with pytest.raises(NpzError, match="covers 20 training examples .* dataset has 2000"):
        ex.load_aux_arrays(tmp_path / "a.npz", num_train=2000)
    with pytest.raises(NpzError, match="covers 8 test examples but the dataset has 500"):
        ex.load_aux_arrays(tmp_path / "a.npz", num_test=500)


def test_object_array_refused_without_unpickling(tmp_path):
    # A pickled object whose unpickling would leave a marker file: it must never be created.
    marker = tmp_path / "unpickled"
    payload = np.array([_Marker(str(marker))], dtype=object)
    arrays = _aux().to_dict()
    arrays["index_test"] = payload
    with open(tmp_path / "evil.npz", "wb") as f:
        np.savez(f, **arrays)  # np.savez pickles object arrays
    with pytest.raises(NpzError, match="object array.*refused"):
        ex.load_aux_arrays(tmp_path / "evil.npz")
    assert not marker.exists()
    with pytest.raises(NpzError, match="object array"):
        save_npz_atomic(tmp_path / "out.npz", {"x": payload})


def _outputs(n_train=20, n_test=8):
    rng = np.random.default_rng(5)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        arrays[f"prediction_{split}"] = rng.integers(0, 4, n).astype(np.int32)
        arrays[f"margin_{split}"] = rng.normal(size=n).astype(np.float32)
        arrays[f"logit_confidence_{split}"] = rng.normal(size=n).astype(np.float32)
    inputs = ex.RecordedInputs(f"uint8 [{n_train}, 8, 8, 1] sha256:{'a' * 64}",
                               f"uint8 [{n_test}, 8, 8, 1] sha256:{'b' * 64}",
                               InputPreprocessing(16.0))
    return ex.RecordedOutputs(**arrays, epoch=3, global_step=12, inputs=inputs)


def test_recorded_outputs_round_trip_and_are_checked(tmp_path):
    """outputs.npz beside the aux arrays (issue 19): the format of heldout.train's recorded
    outputs, every key checked like the aux arrays', never unpickled."""
    run_dir = tmp_path / "exp/0.7/3"
    run_dir.mkdir(parents=True)
    run = ex.Run(str(run_dir), "0.7", 3)
    assert not run.has_outputs()
    with pytest.raises(NpzError, match="outputs.npz: no such file"):
        run.load_outputs()
    ex.write_outputs(run.outputs_path, _outputs())
    assert run.has_outputs() and sorted(load_npz(run.outputs_path)) == sorted(
        [f"{o}_{s}" for o in ("prediction", "margin", "logit_confidence")
         for s in ("train", "test")] + ["format", "epoch", "global_step",
                                        "images_digest_train", "images_digest_test",
                                        "input_preprocessing"])
    back = run.load_outputs(num_train=20, num_test=8)
    assert (back.epoch, back.global_step, back.num_train, back.num_test) == (3, 12, 20, 8)
    assert back.inputs == _outputs().inputs == ex.load_recorded_inputs(run.outputs_path)
    assert back.inputs.preprocessing.scale == 16.0
    for key, value in _outputs().to_dict().items():
        np.testing.assert_array_equal(back.to_dict()[key], value)
    assert back.output("margin", "test").dtype == np.float32
    assert back.output("prediction", "train").dtype == np.int32
    with pytest.raises(NpzError, match=r"key 'prediction_train': expected int array "
                       r"\[n_train=2000\], found int32 \[20\]$"):
        run.load_outputs(num_train=2000)
    for change, match in (
        (lambda a: a.pop("margin_test"), "missing key 'margin_test' .*in an outputs.npz"),
        (lambda a: a.update(format=np.array("other/1")), "key 'format': expected "
         "'heldout.experiment.RecordedOutputs/2', found 'other/1'$"),
        # Written before the outputs carried what they were computed on.
        (lambda a: a.update(format=np.array("heldout.experiment.RecordedOutputs/1")),
         "found 'heldout.experiment.RecordedOutputs/1' \\(an earlier format, without what "
         "the outputs were computed on: images_digest_train, images_digest_test, "
         "input_preprocessing\\)"),
        (lambda a: a.pop("images_digest_test"), "outputs.npz: missing key 'images_digest_test' "
         "\\(expected str scalar in an outputs.npz\\)"),
        (lambda a: a.pop("input_preprocessing"), "missing key 'input_preprocessing'"),
        (lambda a: a.update(images_digest_train=np.array("sha256:abc")),
         "key 'images_digest_train': expected '' or a digest like 'uint8 \\[n, H, W, C\\] "
         "sha256:<64 hex digits>', found 'sha256:abc'"),
        (lambda a: a.update(input_preprocessing=np.array("{scale: 16")),
         "key 'input_preprocessing': not JSON"),
        (lambda a: a.update(input_preprocessing=np.array('{"scale": -1}')),
         "key 'input_preprocessing': malformed input preprocessing"),
        (lambda a: a.update(margin_train=a["margin_train"].astype(np.int64)),
         r"key 'margin_train': expected float array \[n_train=20\], found int64 \[20\]"),
        (lambda a: a.update(logit_confidence_test=np.full(7, 0.5, np.float32)),
         r"key 'logit_confidence_test': expected float array \[n_test=8\], found float32 \[7\]"),
        (lambda a: a["margin_test"].__setitem__(2, np.nan), "key 'margin_test': 1 non-finite "
         "values \\(first at position 2\\)"),
        (lambda a: a["prediction_test"].__setitem__(0, -1), "'prediction_test': 1 negative"),
    ):
        arrays = _outputs().to_dict()
        change(arrays)
        _write_raw(run.outputs_path, arrays)
        with pytest.raises(NpzError, match=match):
            run.load_outputs()
    marker = tmp_path / "unpickled"
    arrays = _outputs().to_dict()
    arrays["margin_test"] = np.array([_Marker(str(marker))], dtype=object)
    _write_raw(run.outputs_path, arrays)
    with pytest.raises(NpzError, match="object array.*refused"):
        run.load_outputs()
    assert not marker.exists()


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_not_a_zip(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(NpzError, match="x.npz: "):
        load_npz(tmp_path / "x.npz")
    with pytest.raises(NpzError, match="no such file"):
        load_npz(tmp_path / "missing.npz")


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "out.npz"
    save_npz_atomic(path, {"a": np.arange(3)})

    from heldout import npzio

    write = npzio._write_stored_member

    def boom(archive, key, array):
        write(archive, key, array[:1])  # a part written, then the disk fills up
        raise RuntimeError("disk full")

    monkeypatch.setattr(npzio, "_write_stored_member", boom)
    with pytest.raises(RuntimeError):
        save_npz_atomic(path, {"a": np.arange(5)})
    np.testing.assert_array_equal(load_npz(path)["a"], np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["out.npz"]


def _make_experiment(root, with_ckpt=True):
    for ratio, ids in RUNS.items():
        for run_id in ids:
            run = root / ratio / str(run_id)
            ex.write_aux_arrays(run / ex.AUX_ARRAYS, _aux(seed=run_id))
            if with_ckpt:
                (run / "checkpoints").mkdir()
                (run / "checkpoints" / "ckpt-10.index").write_bytes(b"x")
                (run / "checkpoints" / "ckpt-10.data-00000-of-00001").write_bytes(b"x")


def test_experiment_with_stray_entries(tmp_path):
    _make_experiment(tmp_path)
    (tmp_path / "README.txt").write_text("stray file")
    (tmp_path / "0.5.partial").mkdir()
    (tmp_path / "0.5" / ".9.tmp-abc").mkdir()
    (tmp_path / "0.5" / "notes").mkdir()
    (tmp_path / "0.5" / "11").mkdir()  # no aux arrays
    shutil.rmtree(tmp_path / "0.25" / "3" / "checkpoints")
    (tmp_path / "0.25" / "3" / "checkpoints").mkdir()
    (tmp_path / "0.25" / "3" / "checkpoints" / "ckpt-10.index").write_bytes(b"x")  # no data shard
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # returned in `skipped`, never warned about (issue 18)
        exp = ex.open_experiment(tmp_path)
    assert len(exp.skipped) == 5
    assert [r.name for r in exp] == ["0.25/3", "0.5/0", "0.5/7"]
    reasons = {os.path.relpath(s.path, tmp_path): s.reason for s in exp.skipped}
    assert reasons == {
        "README.txt": "not a subset-ratio directory",
        "0.5.partial": "not a subset-ratio directory",
        "0.5/.9.tmp-abc": "unfinished run (temporary directory)",
        "0.5/notes": "not a run directory",
        "0.5/11": "no aux_arrays.npz",
    }
    exp = ex.open_experiment(tmp_path, require_checkpoint=True)
    assert len(exp.skipped) == 6
    assert [r.name for r in exp] == ["0.5/0", "0.5/7"]
    with pytest.raises(ex.LayoutError, match="6 entries are not complete runs"):
        ex.open_experiment(tmp_path, require_checkpoint=True, strict=True)


def test_run_from_path(tmp_path):
    _make_experiment(tmp_path)
    run = ex.run_from_path(tmp_path / "0.5" / "7")
    assert (run.ratio, run.run_id, run.subset_ratio) == ("0.5", 7, 0.5)
    with pytest.raises(ex.LayoutError, match="integer run id"):
        ex.run_from_path(tmp_path / "0.5")
    with pytest.raises(ex.LayoutError, match="not a directory"):
        ex.run_from_path(tmp_path / "nope")
    with pytest.raises(ex.LayoutError, match="experiment directory not found"):
        ex.open_experiment(tmp_path / "nope")


def test_npy_file_under_npz_name(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(3))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(NpzError, match="not an .npz file \\(a single .npy array"):
        load_npz(tmp_path / "a.npz")


def test_checkpoint_shards_must_cover_range(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "ckpt-3.index").write_bytes(b"x")
    (ckpt / "ckpt-3.data-00001-of-00002").write_bytes(b"x")
    (ckpt / "ckpt-3.data-00005-of-00002").write_bytes(b"x")
    assert not ex.find_checkpoints(tmp_path)[0].complete
    (ckpt / "ckpt-3.data-00000-of-00002").write_bytes(b"x")
    (ckpt / "ckpt-3.data-00005-of-00002").unlink()
    assert ex.find_checkpoints(tmp_path)[0].complete


def test_ratio_name_not_a_number(fmnist_experiment):
    exp = ex.open_experiment(fmnist_experiment)
    with pytest.raises(KeyError, match="no subset ratio 'abc'"):
        exp.ratio_name("abc")


def test_one_grammar_for_ratio_names():
    from heldout.experiment import parse_ratio, parse_ratio_name, ratio_dir_name
    from heldout.release.archives import is_ratio_name, parse_ratios
    from heldout.train.plan import ratio_name

    for name, value in (("0.7", 0.7), ("1", 1.0), ("1.", 1.0), (".5", 0.5), ("0.50", 0.5)):
        assert parse_ratio_name(name) == value and is_ratio_name(name), name
    for name in ("0", "1.5", "-0.5", "nan", "inf", "1e-1", "0.7.1", "", " 0.7"):
        assert parse_ratio_name(name) is None and not is_ratio_name(name), name
    assert ratio_dir_name(0.7) == ratio_name(0.7) == "0.7" and parse_ratio("0.25") == 0.25
    assert parse_ratios("0.7, 0.5") == (0.7, 0.5)
    for bad in ("nan", "0", "x"):
        with pytest.raises(ValueError, match="in \\(0, 1\\]"):
            parse_ratio(bad)


def _runs(root, count, n_train=20):
    for run_id in range(count):
        ex.write_aux_arrays(root / "0.5" / str(run_id) / ex.AUX_ARRAYS,
                            _aux(n_train=n_train, seed=run_id))
    return ex.open_experiment(root).runs()


def test_iter_aux_arrays_on_threads_reads_the_runs_in_order(tmp_path):
    runs = _runs(tmp_path, 9)
    taken = []

    def progress(items):
        for item in items:
            taken.append(item)
            yield item

    serial = list(ex.iter_aux_arrays(runs, workers=1))
    threaded = list(ex.iter_aux_arrays(runs, workers=3, progress=progress))
    assert [run for run, _ in threaded] == [run for run, _ in serial] == runs == taken
    for (_, a), (_, b) in zip(serial, threaded, strict=True):
        assert a.source == b.source
        for key, value in a.to_dict().items():
            np.testing.assert_array_equal(b.to_dict()[key], value)


@pytest.mark.parametrize("workers", [1, 3])
def test_iter_aux_arrays_bad_file_names_itself_in_its_turn(tmp_path, workers):
    runs = _runs(tmp_path, 8)
    with open(runs[4].aux_path, "r+b") as f:
        f.truncate(200)
    read = []
    with pytest.raises(NpzError, match=f"^{runs[4].aux_path}: truncated or corrupt"):
        for run, _ in ex.iter_aux_arrays(runs, workers=workers):
            read.append(run)
    assert read == runs[:4]
    results = [aux for _, aux in ex.iter_aux_arrays(runs, workers=workers, errors="yield")]
    assert isinstance(results[4], NpzError) and str(results[4]).startswith(runs[4].aux_path)
    assert all(isinstance(aux, ex.AuxArrays) for k, aux in enumerate(results) if k != 4)
    # Without given sizes every run is checked against the first run's.
    ex.write_aux_arrays(runs[4].aux_path, _aux(n_train=30, seed=4))
    match = f"^{runs[4].aux_path}: covers 30 training examples .* but the dataset has 20$"
    with pytest.raises(NpzError, match=match):
        list(ex.iter_aux_arrays(runs, workers=workers))
    assert len(list(ex.iter_aux_arrays(runs, workers=workers, same_sizes=False))) == 8


def test_inspect_names_a_bad_run_and_reads_the_others(tmp_path, capsys):
    from heldout.cli import main

    runs = _runs(tmp_path, 5)
    (tmp_path / "0.5" / "2" / ex.AUX_ARRAYS).write_bytes(b"PK\x03\x04 not a zip")
    assert main(["inspect", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"bad run {runs[2].path}: {runs[2].aux_path}: truncated or corrupt .npz" in err
    assert re.search(r"^ +0\.5 +4 +0 +50\.0%", out, re.M), out
