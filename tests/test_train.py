"""heldout.train and `heldout train`: the heldout procedure written in the release layout."""

import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from heldout import train as T
from heldout.checkpoint import restore
from heldout.cli import main
from heldout.data import ArrayDataset, DatasetError, flip_labels, take_train
from heldout.data.imagenet.tfrecords import TFRecordImageDataset
from heldout.errors import InputError
from heldout.evaluate import make_backend, verify_run
from heldout.experiment import LayoutError, open_experiment, parse_run_ids
from heldout.models import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def small():
    """A learnable 4-class dataset of 8x8 images: 240 train, 60 test."""
    rng = np.random.default_rng(0)
    centers = rng.integers(0, 256, (4, 8, 8, 1))
    out = {}
    for split, n in (("train", 240), ("test", 60)):
        labels = rng.integers(0, 4, n)
        noise = rng.integers(-90, 90, (n, 8, 8, 1))
        out[split] = (np.clip(centers[labels] + noise, 0, 255).astype(np.uint8), labels)
    return ArrayDataset("small", 4, {s: v[0] for s, v in out.items()},
                        {s: v[1].astype(np.int64) for s, v in out.items()})


CONFIG = T.TrainConfig(arch="mlp", epochs=3, batch_size=32, learning_rate=0.05)


# ---------------------------------------------------------------------------------------------
# Run ids, shards, seeds and plans.


def test_parse_run_ids_and_shards():
    # The one run-id parser is heldout.experiment's (tests/test_select_runs.py); train shards
    # what it gives.
    assert list(parse_run_ids("0-4")) == [0, 1, 2, 3, 4]
    assert list(parse_run_ids("7, 0-2,2")) == [0, 1, 2, 7]
    for bad in ("", "a", "5-3", "1-", "-1"):
        with pytest.raises(InputError, match="run ids"):
            parse_run_ids(bad)
    assert T.parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(T.TrainError, match="bad shard"):
            T.parse_shard(bad)
    ids = list(parse_run_ids("0-499"))
    shards = [T.shard_run_ids(ids, i, 3) for i in range(3)]
    assert sorted(sum(shards, [])) == ids
    assert all(not set(a) & set(b) for a in shards for b in shards if a is not b)
    assert T.ratio_name(0.7) == "0.7" and T.ratio_name(0.25) == "0.25"
    with pytest.raises(T.TrainError, match=r"\(0, 1\]"):
        T.ratio_name(0)


def test_run_seeds_and_plans():
    seeds = {T.run_seed(0, ratio, r) for ratio in (0.5, 0.7) for r in range(100)}
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)
    assert T.run_seed(0, 0.7, 3) == T.run_seed(0, 0.7, 3) != T.run_seed(1, 0.7, 3)
    plan = T.plan_run(T.run_seed(0, 0.7, 3), 3, 100, 0.7, epochs=3, batch_size=32)
    again = T.plan_run(plan.seed, 3, 100, 0.7, epochs=3, batch_size=32)
    np.testing.assert_array_equal(plan.subsample_idx, again.subsample_idx)
    np.testing.assert_array_equal(plan.batches(), again.batches())
    assert plan.init_seed == again.init_seed
    assert len(plan.subsample_idx) == 70 and len(np.unique(plan.subsample_idx)) == 70
    assert plan.steps_per_epoch == 3 and plan.num_steps == 9
    batches = plan.batches().reshape(3, 3 * 32)
    for epoch in batches:  # Every epoch: each subset example once, then padding.
        np.testing.assert_array_equal(np.sort(epoch[:70]), np.sort(plan.subsample_idx))
        assert (epoch[70:] == -1).all()
    assert not np.array_equal(batches[0], batches[1])  # Reshuffled every epoch.
    other = T.plan_run(T.run_seed(0, 0.7, 4), 4, 100, 0.7, 3, 32)
    assert not np.array_equal(np.sort(other.subsample_idx), np.sort(plan.subsample_idx))
    with pytest.raises(T.TrainError, match="empty"):
        T.plan_run(1, 0, 10, 0.01, 1, 4)
    plans = T.plan_runs(0, 0.7, [4, 3], 100, 3, 32)  # What both training paths train.
    assert [p.run_id for p in plans] == [4, 3]
    for got, want in zip(plans, (other, plan), strict=True):
        assert (got.seed, got.init_seed) == (want.seed, want.init_seed)
        np.testing.assert_array_equal(got.batches(), want.batches())
    assert T.plan_runs(0, 0.7, [], 100, 3, 32) == []
    with pytest.raises(T.TrainError, match="empty"):
        T.plan_runs(1, 0.01, [0], 10, 1, 4)


def test_label_noise_and_train_size(small):
    cut = take_train(small, 100)
    assert cut.num_examples("train") == 100 and cut.num_examples("test") == 60
    noisy, flipped = flip_labels(cut, 0.1, seed=3)
    assert len(flipped) == 10 and np.all(np.diff(flipped) > 0)
    before, after = cut.split_labels("train"), noisy.split_labels("train")
    assert np.all(after[flipped] != before[flipped])
    keep = np.setdiff1d(np.arange(100), flipped)
    np.testing.assert_array_equal(after[keep], before[keep])
    assert after.max() < 4 and after.min() >= 0
    np.testing.assert_array_equal(flip_labels(cut, 0.1, seed=3)[1], flipped)
    with pytest.raises(DatasetError, match="train_size"):
        take_train(small, 241)


def test_config_errors():
    with pytest.raises(T.TrainError, match="unknown arch"):
        T.TrainConfig(arch="vgg")
    with pytest.raises(T.TrainError, match="MLP only"):
        T.TrainConfig(arch="small_inception", path="stacked")
    with pytest.raises(T.TrainError, match="epochs"):
        T.TrainConfig(epochs=0)
    assert T.TrainConfig(arch="small_inception").resolved_path() == "per_step"
    assert T.TrainConfig(arch="mlp").resolved_path() == "stacked"


# ---------------------------------------------------------------------------------------------
# Training runs.


def test_runs_in_release_layout(tmp_path, small):
    config = T.TrainConfig(**{**CONFIG.__dict__, "path": "per_step", "checkpoint_every": 2})
    result = T.train_experiment(tmp_path, small, 0.5, [0, 1, 2], config, progress=False)
    assert [r.run_id for r in result.trained] == [0, 1, 2] and result.skipped == ()
    experiment = open_experiment(tmp_path, strict=True)
    assert experiment.ratios == ["0.5"] and len(experiment) == 3
    assert [r.has_checkpoint() for r in experiment.runs()] == [True, False, True]
    backend = make_backend("tensorflow", "mlp", 4, (8, 8, 1))
    for run in experiment.runs():
        aux = run.load_aux(num_train=240, num_test=60)
        info = T.load_run_info(run)
        assert info["seed"] == T.run_seed(0, 0.5, run.run_id) and info["arch"] == "mlp"
        plan = T.plan_run(info["seed"], run.run_id, 240, 0.5, 3, 32)
        np.testing.assert_array_equal(aux.subsample_idx, plan.subsample_idx)
        assert aux.accuracy("train") > 0.9  # The runs learned.
        assert info["accuracy"]["test"] == pytest.approx(aux.accuracy("test"))
        mode = stat.S_IMODE(os.stat(run.path).st_mode)
        assert mode & 0o055 == 0o055 & ~_umask()  # Not left private like a temporary dir.
        if run.has_checkpoint():
            for split in ("train", "test"):
                result = verify_run(backend, run, small, split, progress=False)
                assert result.check.all_match and result.check.num_total == {
                    "train": 240, "test": 60}[split]
            assert result.restored.epoch == 3 and result.restored.global_step == 12


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_runs_record_their_input_preprocessing(tmp_path, small):
    """run.json says how the images became model input (issue 19: what export writes), and a
    ratio directory refuses runs of the same images scaled otherwise."""
    import dataclasses

    from heldout.data.preprocessing import InputPreprocessing

    T.train_experiment(tmp_path, small, 0.5, [0], CONFIG, progress=False)
    (run,) = open_experiment(tmp_path).runs()
    assert T.load_run_info(run)["input_preprocessing"] == {
        "scale": 255.0, "mean": None, "std": None, "resize": None, "crop_padding": 0}
    assert run.input_preprocessing() == InputPreprocessing(255.0)
    sixteen = dataclasses.replace(small, scale=16.0)
    with pytest.raises(T.TrainError, match=r"other data.*input_preprocessing \{'scale': 255.0"):
        T.train_experiment(tmp_path, sixteen, 0.5, [1], CONFIG, progress=False)
    # Other images with the same labels: only the recorded outputs' image digest tells.
    inverted = dataclasses.replace(small, images={**small.images,
                                                  "train": 255 - small.images["train"]})
    with pytest.raises(T.TrainError, match=r"run 0 was trained on other training images with "
                       r"the same labels \(uint8 \[\d+, "):
        T.train_experiment(tmp_path, inverted, 0.5, [1], CONFIG, progress=False)


@pytest.mark.parametrize("path", ["per_step", "stacked"])
def test_recorded_outputs_are_what_the_checkpoint_gives(tmp_path, small, path):
    """Every run records its prediction, margin and logit confidence on both splits
    (outputs.npz, issue 19); on the runs that also have a checkpoint they equal what
    `heldout predict` stores from restoring it, bit for bit; on every run the predictions
    agree with the aux arrays' correctness."""
    from heldout.data.fingerprint import images_digest
    from heldout.data.npz import save_npz_dataset
    from heldout.experiment import RecordedInputs
    from heldout.predict import open_store

    config = T.TrainConfig(**{**CONFIG.__dict__, "path": path, "models_per_step": 3,
                              "checkpoint_every": 2})
    T.train_experiment(tmp_path / "exp", small, 0.5, [0, 1, 2], config, progress=False)
    runs = open_experiment(tmp_path / "exp", strict=True).runs()
    assert [r.has_checkpoint() for r in runs] == [True, False, True]
    assert [T.load_run_info(r)["path"] for r in runs] == [path] * 3
    save_npz_dataset(tmp_path / "small.npz", small)
    for split in ("train", "test"):
        store = tmp_path / f"{split}.zarr"
        assert main(["predict", str(tmp_path / "exp"), "--dataset_npz", str(tmp_path / "small.npz"),
                     "--split", split, "--out", str(store), "--workers", "0",
                     "--source", "checkpoints"]) == 0  # restored, not read from outputs.npz
        s = open_store(store)
        assert s.run_names == ["0.5/0", "0.5/2"]
        labels = small.split_labels(split)
        for run in runs:
            aux = run.load_aux()
            outputs = run.load_outputs(aux.num_train, aux.num_test)
            assert (outputs.epoch, outputs.global_step) == (3, 12)
            # What they were computed on: the images' digests, run.json's preprocessing.
            assert outputs.inputs == RecordedInputs(
                images_digest(small, "train"), images_digest(small, "test"),
                run.input_preprocessing())
            assert outputs.inputs.images_test.startswith("uint8 [")
            np.testing.assert_array_equal(outputs.output("prediction", split) == labels,
                                          aux.correctness(split))
            if run.name in s.run_names:
                row = s.run_names.index(run.name)
                for name in ("prediction", "margin", "logit_confidence"):
                    np.testing.assert_array_equal(outputs.output(name, split), s[name][row],
                                                  err_msg=f"{run.name} {name} {split}")
                assert (s["epoch"][row], s["global_step"][row]) == (3, 12)


@pytest.mark.slow
def test_stacked_path_equals_per_step_path(tmp_path, small):
    """K runs at once (K = 2, with a group of 1 left over) give the runs of separate training:
    the same subsets, the same weights within float32 tolerance and the same correctness."""
    runs = [0, 1, 2]
    per_step = T.TrainConfig(**{**CONFIG.__dict__, "path": "per_step"})
    at_once = T.TrainConfig(**{**CONFIG.__dict__, "path": "stacked", "models_per_step": 2,
                               "checkpoint_every": 2})
    T.train_experiment(tmp_path / "a", small, 0.5, runs, per_step, progress=False)
    T.train_experiment(tmp_path / "b", small, 0.5, runs, at_once, progress=False)
    a, b = (open_experiment(tmp_path / d).runs() for d in "ab")
    for run_a, run_b in zip(a, b, strict=True):
        aux_a, aux_b = run_a.load_aux(), run_b.load_aux()
        np.testing.assert_array_equal(aux_a.subsample_idx, aux_b.subsample_idx)
        model_a, model_b = build_model("mlp", 4), build_model("mlp", 4)
        restore(model_a, run_a.path, (8, 8, 1))
        images = small.images["train"].astype(np.float32) / 255
        logits = model_a(tf.constant(images)).numpy()
        if run_b.has_checkpoint():
            restored = restore(model_b, run_b.path, (8, 8, 1))
            assert restored.global_step == 12
            for va, vb in zip(model_a.variables, model_b.variables, strict=True):
                np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-4, atol=1e-5)
        for split in ("train", "test"):
            differ = aux_a.correctness(split) != aux_b.correctness(split)
            if split == "train" and differ.any():  # Only float32 ties may differ.
                top2 = np.sort(logits[differ], axis=1)[:, -2:]
                assert np.all(top2[:, 1] - top2[:, 0] < 1e-4)
            assert differ.sum() <= 1
        assert T.load_run_info(run_b)["path"] == "stacked"


@pytest.mark.slow
def test_resume_skips_complete_runs_and_clears_stale_temporaries(tmp_path, small):
    T.train_experiment(tmp_path, small, 0.5, [0, 1], CONFIG, progress=False)
    first = (tmp_path / "0.5" / "0" / "aux_arrays.npz").read_bytes()
    stale = tmp_path / "0.5" / ".2.tmp-killed"
    stale.mkdir()
    (stale / "aux_arrays.npz").write_bytes(b"half")
    opened = open_experiment(tmp_path)
    assert len(opened) == 2  # The stale run is not counted.
    assert "unfinished run (temporary directory)" in [s.reason for s in opened.skipped]
    result = T.train_experiment(tmp_path, small, 0.5, range(4), CONFIG, progress=False)
    assert result.skipped == (0, 1) and [r.run_id for r in result.trained] == [2, 3]
    assert not stale.exists()
    assert (tmp_path / "0.5" / "0" / "aux_arrays.npz").read_bytes() == first
    assert len(open_experiment(tmp_path, strict=True)) == 4


@pytest.mark.slow
def test_resume_refuses_other_settings(tmp_path, small):
    """Adding runs to a ratio directory with other training settings than its runs' run.json
    is refused (the runs would mix configurations); the same settings resume."""
    one_epoch = T.TrainConfig(**{**CONFIG.__dict__, "epochs": 1})
    T.train_experiment(tmp_path, small, 0.5, [0], one_epoch, progress=False)
    for field, value, stored in (("epochs", 2, 1), ("batch_size", 16, 32),
                                 ("learning_rate", 0.1, 0.05), ("momentum", 0.5, 0.9),
                                 ("seed", 7, 0)):
        other = T.TrainConfig(**{**one_epoch.__dict__, field: value})
        name = "experiment_seed" if field == "seed" else field
        with pytest.raises(T.TrainError, match=rf"run 0 was trained with other settings "
                           rf"\({name}: {stored!r} in its run.json, {value!r} requested\)"):
            T.train_experiment(tmp_path, small, 0.5, [0, 1], other, progress=False)
    assert sorted(os.listdir(tmp_path / "0.5")) == ["0"]  # Nothing was started.
    result = T.train_experiment(tmp_path, small, 0.5, [0, 1], one_epoch, progress=False)
    assert result.skipped == (0,) and [r.run_id for r in result.trained] == [1]


@pytest.mark.slow
def test_shards_give_the_runs_of_one_process(tmp_path, small):
    for i in range(2):
        ids = T.shard_run_ids(range(4), i, 2)
        T.train_experiment(tmp_path / "sharded", small, 0.5, ids, CONFIG, progress=False)
    T.train_experiment(tmp_path / "single", small, 0.5, range(4), CONFIG, progress=False)
    sharded, single = (open_experiment(tmp_path / d).runs() for d in ("sharded", "single"))
    assert [r.run_id for r in sharded] == [0, 1, 2, 3]
    for a, b in zip(sharded, single, strict=True):
        for key, value in a.load_aux().to_dict().items():
            np.testing.assert_array_equal(value, b.load_aux().to_dict()[key], err_msg=key)


def test_a_temporary_run_still_being_written_is_not_taken_for_stale(tmp_path):
    """A Dask task whose command was stopped keeps running on its worker (Dask cannot interrupt
    it); when the command is run again, the new task of the same run must leave that task's
    temporary directory alone: removed under it, it was made again by the atomic writes of the
    aux arrays and run.json and renamed into place without its checkpoint, and the new task,
    finding the run complete, threw its own whole run away."""
    from heldout.data.preprocessing import InputPreprocessing
    from heldout.experiment import RecordedInputs, RecordedOutputs, make_aux_arrays
    from heldout.lock import unlock

    ratio_dir = str(tmp_path / "0.5")
    os.makedirs(ratio_dir)
    orphan = T.rundir.start_run(ratio_dir, 7)  # the task of the stopped command
    os.makedirs(os.path.join(orphan.path, "checkpoints"))
    (tmp_path / "0.5" / os.path.basename(orphan.path) / "checkpoints" / "ckpt-1.index"
     ).write_bytes(b"")
    rerun = T.rundir.start_run(ratio_dir, 7)  # the same run, sent again
    assert os.path.isdir(os.path.join(orphan.path, "checkpoints")) and rerun.path != orphan.path
    aux = make_aux_arrays(np.arange(5), np.ones(10, bool), np.ones(4, bool), None)
    outputs = RecordedOutputs(*[np.zeros(n, dtype) for n in (10, 4)
                                for dtype in (np.int32, np.float32, np.float32)], 1, 1,
                              RecordedInputs("", "", InputPreprocessing()))
    final = os.path.join(ratio_dir, "7")
    assert T.rundir.finish_run(orphan, final, aux, {"run_id": 7}, outputs)
    assert os.listdir(os.path.join(final, "checkpoints")) == ["ckpt-1.index"]
    assert not T.rundir.finish_run(rerun, final, aux, {"run_id": 7}, outputs)  # completed
    assert sorted(os.listdir(ratio_dir)) == ["7"]
    # A temporary directory whose writer died (its lock released) is stale and removed.
    dead = T.rundir.start_run(ratio_dir, 8)
    unlock(dead.owner, dead.fd)  # its writer died: the kernel released its lock
    again = T.rundir.start_run(ratio_dir, 8)
    assert not os.path.exists(dead.path) and os.path.isdir(again.path)
    T.rundir.discard_run(again)
    assert sorted(os.listdir(ratio_dir)) == ["7"]


def test_interrupted_run_leaves_nothing_that_counts(tmp_path, small, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt  # As a Ctrl-C during evaluation.

    # train_experiment calls it from the module that trains the groups of runs.
    monkeypatch.setattr(T.groups, "evaluate_logits", fail)
    config = T.TrainConfig(**{**CONFIG.__dict__, "path": "per_step"})
    with pytest.raises(KeyboardInterrupt):
        T.train_experiment(tmp_path, small, 0.5, [0], config, progress=False)
    assert os.listdir(tmp_path / "0.5") == []
    monkeypatch.undo()
    T.train_experiment(tmp_path, small, 0.5, [0], config, progress=False)
    assert len(open_experiment(tmp_path, strict=True)) == 1


def test_refuses_directories_in_the_way(tmp_path, small):
    (tmp_path / "0.5" / "1").mkdir(parents=True)
    with pytest.raises(LayoutError, match=r"\[1\] exist without aux_arrays.npz"):
        T.train_experiment(tmp_path, small, 0.5, [0, 1], CONFIG, progress=False)
    T.train_experiment(tmp_path / "e", small, 0.5, [0], CONFIG, progress=False)
    noisy, _ = flip_labels(small, 0.1)
    with pytest.raises(T.TrainError, match="train_label_hash"):
        T.train_experiment(tmp_path / "e", noisy, 0.5, [1], CONFIG, progress=False)
    tfrecords = TFRecordImageDataset("imagenet_shards", 4, {"train": (), "test": ()},
                                     {"train": small.labels["train"],
                                      "test": small.labels["test"]}, source="/data/shards")
    with pytest.raises(T.TrainError, match=r"needs an in-memory dataset.*TFRecordImageDataset"):
        T.train_experiment(tmp_path / "g", tfrecords, 0.5, [0], CONFIG, progress=False)
    assert not (tmp_path / "g").exists()
    with pytest.raises(T.TrainError, match="needs a 'test' split"):
        T.train_experiment(tmp_path / "f", ArrayDataset("x", 4, {"train": small.images["train"]},
                                                        {"train": small.labels["train"]}),
                           0.5, [0], CONFIG, progress=False)


@pytest.mark.slow
def test_cli_train_shards_and_errors(tmp_path, fmnist_dir, fmnist_idx_dir, capsys):
    data = str(fmnist_dir / "dataset.npz")
    exp = str(tmp_path / "exp")
    common = ["train", exp, "--dataset_npz", data, "--arch", "mlp", "--ratio", "0.25",
              "--epochs", "1", "--quiet"]
    assert main([*common, "--run_ids", "0-2", "--shard", "1/2"]) == 0
    assert "trained 1 runs, skipped 0" in capsys.readouterr().out
    assert main([*common, "--num_runs", "3"]) == 0
    assert "trained 2 runs, skipped 1" in capsys.readouterr().out
    assert main(["inspect", exp]) == 0
    assert "3 complete runs in 1 subset ratios" in capsys.readouterr().out
    assert main(["verify", os.path.join(exp, "0.25", "1"), "--dataset_npz", data,
                 "--arch", "mlp"]) == 0
    assert "500 out of 500 predictions match" in capsys.readouterr().out
    idx_exp = str(tmp_path / "idx")
    assert main(["train", idx_exp, "--idx_dir", fmnist_idx_dir, "--train_size", "300",
                 "--num_runs", "1", "--epochs", "1", "--quiet"]) == 0  # Default arch: the MLP.
    run = open_experiment(idx_exp).runs()[0]
    assert T.load_run_info(run)["arch"] == "mlp"
    assert run.load_aux(num_train=300, num_test=500).accuracy("test") > 0.3
    capsys.readouterr()
    assert main([*common, "--run_ids", "3-1"]) == 2
    assert "runs backwards" in capsys.readouterr().err
    assert main([*common, "--run_ids", "0", "--shard", "2/2"]) == 2
    assert "bad shard" in capsys.readouterr().err


@pytest.mark.slow
def test_small_inception_killed_resumed_and_verified(tmp_path, fmnist_dir, capsys):
    """SmallInception on the first 400 training and 100 test images of the fmnist32 fixture: a
    training process killed mid-run leaves no run that `inspect` counts; running it again
    completes it, and `heldout verify` matches every prediction of both splits."""
    from heldout.data import DatasetSpec, load_dataset
    from heldout.data.arrays import ArrayDataset
    from heldout.data.npz import save_npz_dataset

    full = load_dataset(DatasetSpec(dataset_npz=str(fmnist_dir / "dataset.npz")))
    data = str(tmp_path / "fmnist-400.npz")
    save_npz_dataset(data, ArrayDataset(
        "fmnist-400", full.num_classes,
        {s: full.images[s][:n] for s, n in (("train", 400), ("test", 100))},
        {s: full.split_labels(s)[:n] for s, n in (("train", 400), ("test", 100))},
        scale=full.scale))
    exp = tmp_path / "exp"
    args = ["train", str(exp), "--dataset_npz", data, "--arch", "small_inception",
            "--ratio", "0.25", "--run_ids", "0", "--epochs", "4", "--batch_size", "50",
            "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "heldout", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ratio_dir = exp / "0.25"
    try:
        # Kill as soon as run 0 is under way: its temporary directory exists and the run
        # directory does not. From there the run still traces, trains 8 steps, evaluates 500
        # images and writes a checkpoint (seconds), so it cannot complete before the kill.
        deadline = time.monotonic() + 300
        while not (list(ratio_dir.glob(".0.tmp-*")) and not (ratio_dir / "0").exists()):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "run 0 never started"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL  # Killed, not finished on its own.
    # Only the unfinished run (and the lock files the killed process held: the run's, and its
    # temporary directory's owner lock).
    left = sorted(p.name for p in ratio_dir.iterdir()
                  if p.name != ".0.lock" and not p.name.startswith(".0.owner-"))
    assert len(left) == 1 and left[0].startswith(".0.tmp-"), left
    opened = open_experiment(exp)
    assert len(opened) == 0
    assert "unfinished run (temporary directory)" in [s.reason for s in opened.skipped]
    assert main(["inspect", str(exp)]) == 2
    assert "no complete runs" in capsys.readouterr().err

    assert main(args) == 0
    assert "trained 1 runs, skipped 0" in capsys.readouterr().out
    experiment = open_experiment(exp, require_checkpoint=True, strict=True)  # Stale dir gone.
    assert [r.run_id for r in experiment.runs()] == [0]
    assert main(["inspect", str(exp)]) == 0
    assert "1 complete runs in 1 subset ratios" in capsys.readouterr().out
    run0 = experiment.runs()[0].path
    for split, n in (("train", 400), ("test", 100)):
        assert main(["verify", run0, "--dataset_npz", data, "--split", split]) == 0
        assert f"{n} out of {n} predictions match" in capsys.readouterr().out
    info = T.load_run_info(run0)
    assert info["arch"] == "small_inception" and info["steps"] == 8 and info["path"] == "per_step"
    assert info["seed"] == T.run_seed(0, 0.25, 0)
    subset = T.plan_run(info["seed"], 0, 400, 0.25, 4, 50).subsample_idx
    np.testing.assert_array_equal(experiment.runs()[0].load_aux().subsample_idx, subset)


def test_trained_runs_carry_the_dataset_fingerprint(tmp_path):
    from heldout.data import ArrayDataset
    from heldout.data.fingerprint import fingerprint_dataset
    from heldout.experiment import open_experiment
    from heldout.train import TrainConfig, train_experiment

    rng = np.random.default_rng(0)
    dataset = ArrayDataset(
        "tiny", 3,
        {"train": rng.integers(0, 256, (30, 4, 4, 1), dtype=np.uint8),
         "test": rng.integers(0, 256, (10, 4, 4, 1), dtype=np.uint8)},
        {"train": rng.integers(0, 3, 30), "test": rng.integers(0, 3, 10)},
    )
    train_experiment(tmp_path, dataset, 0.5, [0], TrainConfig(arch="mlp", epochs=1,
                                                               batch_size=8), progress=False)
    (run,) = open_experiment(tmp_path).runs()
    assert run.load_aux().fingerprint == fingerprint_dataset(dataset)


@pytest.mark.parametrize("path", ["per_step", "stacked"])
def test_a_diverged_run_is_stopped_and_not_written(tmp_path, small, path):
    # Before the fix a learning rate this large gave NaN weights, NaN logits, argmax 0, and a
    # "complete" run whose class-0 examples all counted as correct.
    config = T.TrainConfig(**{**CONFIG.__dict__, "path": path, "learning_rate": 1e30,
                              "epochs": 1})
    with pytest.raises(T.DivergedError, match=r"run.*(became nan|non-finite)"):
        T.train_experiment(tmp_path, small, 0.5, [0, 1], config, progress=False)
    assert os.listdir(tmp_path / "0.5") == []


_HOLD_LOCK = """
import fcntl, os, sys, time
ratio_dir, run_id = sys.argv[1], sys.argv[2]
fd = os.open(os.path.join(ratio_dir, f".{run_id}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
os.makedirs(os.path.join(ratio_dir, f".{run_id}.tmp-other"))
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_two_processes_with_overlapping_run_ids(tmp_path, small):
    # Before the fix a second process deleted the first one's temporary run directories and
    # trained the same runs again.
    ratio_dir = tmp_path / "0.5"
    ratio_dir.mkdir()
    other = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(ratio_dir), "1"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        result = T.train_experiment(tmp_path, small, 0.5, [0, 1, 2], CONFIG, progress=False)
        assert [r.run_id for r in result.trained] == [0, 2] and result.busy == (1,)
        assert (ratio_dir / ".1.tmp-other").is_dir()  # The live process's work is kept.
    finally:
        other.kill()
        other.wait()
    result = T.train_experiment(tmp_path, small, 0.5, [0, 1, 2], CONFIG, progress=False)
    assert [r.run_id for r in result.trained] == [1] and result.skipped == (0, 2)
    assert sorted(os.listdir(ratio_dir)) == ["0", "1", "2"]  # Stale directory and locks gone.
