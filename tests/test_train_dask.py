"""`heldout train` on Dask: a local cluster pinned one worker per (faked) GPU, the same runs as in
this process, a run failing on a worker, a worker killed mid-run, an unreachable scheduler.

One local cluster of 2 worker processes is shared by the module (each worker imports TensorFlow
once); the CLI test of `--workers 2` starts its own.
"""

import os
import re
import signal
import sys
import threading
import time

import numpy as np
import pytest

from heldout import cluster as C
from heldout import train as T
from heldout.checkpoint import restore
from heldout.cli import main
from heldout.data import DatasetSpec, flip_labels, load_dataset
from heldout.data.arrays import model_input
from heldout.experiment import open_experiment
from heldout.models import build_model

CONFIG = T.TrainConfig(arch="mlp", epochs=2, batch_size=50, learning_rate=0.05)


@pytest.fixture(scope="module")
def spec(fmnist_dir):
    return DatasetSpec(dataset_npz=str(fmnist_dir / "dataset.npz"), train_size=300)


@pytest.fixture(scope="module")
def dataset(spec):
    return load_dataset(spec, ("train", "test"))


@pytest.fixture(scope="module")
def cluster():
    """A `heldout.cluster.local_cluster` of 2 workers on a machine faking 2 visible GPUs, each
    importing TensorFlow (quietly) when it starts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(C, "visible_gpus", lambda: ["0", "1"])
        local = C.local_cluster(2, preload=["heldout.quiet"])
    from distributed import Client

    try:
        with Client(local) as client:
            yield local, client
    finally:
        local.close()


def _same_runs(a, b, dataset):
    """Equal subsets and aux arrays' keys; weights within float32 rounding; correctness equal
    but for float32 ties (as K-at-once against one at a time, tests/test_train.py)."""
    runs_a, runs_b = open_experiment(a, strict=True).runs(), open_experiment(b, strict=True).runs()
    assert [r.name for r in runs_a] == [r.name for r in runs_b]
    shape = dataset.image_shape
    for run_a, run_b in zip(runs_a, runs_b, strict=True):
        aux_a, aux_b = run_a.load_aux(), run_b.load_aux()
        np.testing.assert_array_equal(aux_a.subsample_idx, aux_b.subsample_idx)
        model_a, model_b = build_model("mlp", 10), build_model("mlp", 10)
        restore(model_a, run_a.path, shape)
        restore(model_b, run_b.path, shape)
        for va, vb in zip(model_a.variables, model_b.variables, strict=True):
            np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-4, atol=1e-5)
        for split in ("train", "test"):
            differ = aux_a.correctness(split) != aux_b.correctness(split)
            if differ.any():  # Only float32 ties may differ.
                images = model_input(dataset.images[split][differ], dataset.scale)
                top2 = np.sort(model_a(images).numpy(), axis=1)[:, -2:]
                assert np.all(top2[:, 1] - top2[:, 0] < 1e-4)
        info_a, info_b = T.load_run_info(run_a), T.load_run_info(run_b)
        assert info_a["seed"] == info_b["seed"] and info_a["path"] == info_b["path"]


@pytest.mark.slow
def test_worker_specs_and_pinning(cluster):
    """Each worker got its own GPU in its environment when it started (before the preload
    imported TensorFlow), and the resource GPU=1; this process's environment is untouched."""
    local, client = cluster
    assert client.run(lambda: "tensorflow" in sys.modules) == dict.fromkeys(
        client.nthreads(), True)
    pinned = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert sorted(pinned.values()) == ["0", "1"]
    resources = [w["resources"] for w in client.scheduler_info()["workers"].values()]
    assert resources == [{"GPU": 1}, {"GPU": 1}]
    assert list(client.nthreads().values()) == [1, 1]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ or os.environ["CUDA_VISIBLE_DEVICES"] not in (
        "0", "1")
    assert all("env" not in s["options"] for s in C.worker_specs(3, []).values())
    with pytest.raises(C.ClusterError, match=r"`workers`=3: only 2 GPUs are visible \(0,1\)"):
        C.worker_specs(3, ["0", "1"])
    with pytest.raises(C.ClusterError, match="at least 1 worker"):
        C.worker_specs(0, [])


def _cached_trainer(dask_worker):
    """id of the worker's cached per-step trainer, or None."""
    state = getattr(dask_worker, "_heldout_train_state", {}).get("state")
    return id(state.trainer) if state is not None else None


@pytest.mark.slow
def test_dask_runs_equal_in_process_runs(tmp_path, cluster, spec, dataset):
    """Per-step runs on the cluster (one run per task, split with a shard as well) are the runs
    of this process; a second call skips them all."""
    local, client = cluster
    config = T.TrainConfig(**{**CONFIG.__dict__, "path": "per_step"})
    T.train_experiment(tmp_path / "local", dataset, 0.5, range(3), config, progress=False)
    address = local.scheduler_address
    first = T.train_experiment(tmp_path / "dask", dataset, 0.5, T.shard_run_ids(range(3), 1, 2),
                               config, progress=False, scheduler=address, dataset_spec=spec)
    assert [r.run_id for r in first.trained] == [1] and first.failed == ()
    trainers = client.run(_cached_trainer)
    rest = T.train_experiment(tmp_path / "dask", dataset, 0.5, range(3), config,
                              progress=False, scheduler=address, dataset_spec=spec)
    assert [r.run_id for r in rest.trained] == [0, 2] and rest.skipped == (1,)
    # Each worker kept its dataset and compiled trainer across tasks and calls.
    kept = {w: t for w, t in client.run(_cached_trainer).items() if t is not None}
    assert kept and all(trainers[w] in (None, t) for w, t in kept.items())
    assert any(trainers[w] == t for w, t in kept.items())
    _same_runs(tmp_path / "local", tmp_path / "dask", dataset)
    again = T.train_experiment(tmp_path / "dask", dataset, 0.5, range(3), config,
                               progress=False, scheduler=address, dataset_spec=spec)
    assert again.trained == () and again.skipped == (0, 1, 2)
    with pytest.raises(T.TrainError, match="needs dataset_spec"):
        T.train_experiment(tmp_path / "x", dataset, 0.5, [0], config, scheduler=address)


_FAIL_RUN_1 = """
import heldout.train.groups as p
from heldout.train.plan import DivergedError
p._real_train_model_run = getattr(p, "_real_train_model_run", p.train_model_run)
def _fail(trainer, dataset, plan, progress=False):
    if plan.run_id == 1:
        raise DivergedError("run 1: the training loss became nan (injected)")
    return p._real_train_model_run(trainer, dataset, plan, progress)
p.train_model_run = _fail
"""
_UNDO = """
import heldout.train.groups as p
p.train_model_run = getattr(p, "_real_train_model_run", p.train_model_run)
"""


@pytest.mark.slow
def test_a_run_failing_on_a_worker_is_named_and_the_others_finish(tmp_path, cluster, fmnist_dir,
                                                                  capsys):
    local, client = cluster
    client.run(exec, _FAIL_RUN_1, {})
    try:
        argv = ["train", str(tmp_path / "exp"), "--dataset_npz", str(fmnist_dir / "dataset.npz"),
                "--train_size", "300", "--arch", "mlp", "--path", "per_step", "--epochs", "1",
                "--batch_size", "50", "--ratio", "0.5", "--num_runs", "3", "--quiet",
                "--scheduler", local.scheduler_address]
        assert main(argv) == 1
    finally:
        client.run(exec, _UNDO, {})
    out, err = capsys.readouterr()
    assert "run 1: FAILED: run 1: the training loss became nan (injected)" in out
    assert "trained 2 runs, skipped 0 complete runs, 1 runs failed" in out
    assert "run the command again to retry them" in err
    assert sorted(os.listdir(tmp_path / "exp" / "0.5")) == ["0", "2"]  # Nothing left of run 1.
    assert main(argv) == 0
    assert "trained 1 runs, skipped 2 complete runs" in capsys.readouterr().out


@pytest.mark.slow
def test_a_worker_loading_another_dataset_refuses_to_train(tmp_path, cluster, spec, dataset):
    local, _ = cluster
    noisy, _ = flip_labels(dataset, 0.2)  # What this process trains on is not what spec gives.
    result = T.train_experiment(tmp_path, noisy, 0.5, [0, 1], CONFIG, progress=False,
                                scheduler=local.scheduler_address, dataset_spec=spec)
    assert result.trained == () and [r for r, _ in result.failed] == [0, 1]
    assert re.search(r"the worker loaded another dataset from DatasetSpec\(.*\) than the calling "
                     r"process: split 'train' labels differ", result.failed[0][1])
    assert os.listdir(tmp_path / "0.5") == []


def test_dataset_spec_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.npz").write_bytes(b"")
    spec = DatasetSpec(dataset_npz="d.npz", data_dir="tfds", train_size=3).absolute()
    assert spec == DatasetSpec(dataset_npz=str(tmp_path / "d.npz"),
                               data_dir=str(tmp_path / "tfds"), train_size=3)
    assert DatasetSpec(dataset="d.npz").absolute().dataset_npz == str(tmp_path / "d.npz")
    assert DatasetSpec(dataset="mnist:3.0.1").absolute().dataset == "mnist:3.0.1"


@pytest.mark.parametrize("name", ["scheduler.json", os.path.join("cluster", "scheduler")])
def test_a_missing_scheduler_file_is_named_as_such(tmp_path, monkeypatch, name):
    """Not 'missing port number in address' (what Dask says of a path it takes for an address)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(C.ClusterError) as info:
        C.check(name, 0)
    assert str(info.value) == (
        f"`scheduler`={name}: no such scheduler file (give the file that `dask scheduler "
        "--scheduler-file` writes, or an address such as tcp://host:8786)")


def _incomplete_run_dirs(ratio_dir) -> list[str]:
    """Run directories (``<ratio>/<id>``) that lack anything a complete run has."""
    bad = []
    for name in os.listdir(ratio_dir):
        path = os.path.join(ratio_dir, name)
        if name.isdigit() and not all(os.path.exists(os.path.join(path, f)) for f in (
                "aux_arrays.npz", "run.json", "checkpoints")):
            bad.append(name)
    return bad


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_no_partial_run(tmp_path, cluster, spec, dataset):
    """SIGKILL of a worker process mid-run: only the run's temporary directory is left, the run
    goes to another worker and is trained again; the runs are the uninterrupted ones."""
    local, client = cluster
    # 600 steps per run (seconds): the run is still training when its worker is killed.
    config = T.TrainConfig(**{**CONFIG.__dict__, "path": "per_step", "epochs": 40,
                              "batch_size": 10})
    ratio_dir = tmp_path / "exp" / "0.5"
    results, errors = [], []

    def train():
        try:
            results.append(T.train_experiment(tmp_path / "exp", dataset, 0.5, [0, 1], config,
                                              progress=False, scheduler=local.scheduler_address,
                                              dataset_spec=spec))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    thread = threading.Thread(target=train)
    thread.start()
    deadline = time.monotonic() + 120

    def started(run_id):
        return ratio_dir.is_dir() and list(ratio_dir.glob(f".{run_id}.tmp-*"))

    while not (started(0) and started(1)):  # Each worker is training one of the runs.
        assert thread.is_alive() and time.monotonic() < deadline, errors or "runs never started"
        time.sleep(0.02)
    worker = next(w for w, keys in client.processing().items() if keys)
    pid = client.run(os.getpid, workers=[worker])[worker]
    assert not (ratio_dir / "0").exists() and not (ratio_dir / "1").exists()
    os.kill(pid, signal.SIGKILL)
    left = sorted(os.listdir(ratio_dir))
    assert any(".tmp-" in n for n in left) and _incomplete_run_dirs(ratio_dir) == [], left
    while thread.is_alive():
        assert _incomplete_run_dirs(ratio_dir) == [], "a run directory appeared incomplete"
        assert time.monotonic() < deadline + 240, "training did not finish"
        time.sleep(0.05)
    thread.join()
    assert not errors, errors
    result = results[0]
    assert [r.run_id for r in result.trained] == [0, 1] and result.failed == ()
    assert sorted(os.listdir(ratio_dir)) == ["0", "1"]  # The killed run's temporary dir is gone.
    for run in open_experiment(tmp_path / "exp", strict=True).runs():
        plan = T.plan_run(T.run_seed(0, 0.5, run.run_id), run.run_id, 300, 0.5, 40, 10)
        np.testing.assert_array_equal(run.load_aux().subsample_idx, plan.subsample_idx)
    again = T.train_experiment(tmp_path / "exp", dataset, 0.5, [0, 1], config, progress=False,
                               scheduler=local.scheduler_address, dataset_spec=spec)
    assert again.trained == () and again.skipped == (0, 1)


@pytest.mark.slow
def test_cli_workers_2_writes_the_runs_of_workers_0(tmp_path, fmnist_dir, dataset, capsys,
                                                    monkeypatch):
    """K=2 stacked MLP runs per task (3 runs: a group of 2 and one of 1) on `--workers 2`."""
    monkeypatch.setattr(C, "visible_gpus", lambda: [])  # CPU workers, whatever the machine.
    common = ["--dataset_npz", str(fmnist_dir / "dataset.npz"), "--train_size", "300",
              "--arch", "mlp", "--path", "stacked", "--models_per_step", "2", "--epochs", "2",
              "--batch_size", "50", "--ratio", "0.5", "--num_runs", "3", "--quiet"]
    assert main(["train", str(tmp_path / "w0"), *common, "--workers", "0"]) == 0
    assert main(["train", str(tmp_path / "w2"), *common, "--workers", "2"]) == 0
    out, err = capsys.readouterr()
    assert "on 2 Dask workers" in err
    assert out.count("trained 3 runs, skipped 0 complete runs") == 2
    _same_runs(tmp_path / "w0", tmp_path / "w2", dataset)
    info = T.load_run_info(open_experiment(tmp_path / "w2").runs()[0])
    assert info["path"] == "stacked" and info["models_per_step"] == 2


@pytest.mark.slow
def test_cli_cluster_errors(tmp_path, fmnist_dir, capsys, monkeypatch):
    argv = ["train", str(tmp_path / "exp"), "--dataset_npz", str(fmnist_dir / "dataset.npz"),
            "--train_size", "300", "--num_runs", "1", "--epochs", "1", "--quiet"]
    assert main([*argv, "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.match(r"heldout train: error: --scheduler tcp://127\.0\.0\.1:9: cannot connect",
                    err), err
    assert not list((tmp_path / "exp").rglob("aux_arrays.npz"))
    with pytest.raises(SystemExit) as e:
        main([*argv, "--scheduler", "tcp://127.0.0.1:9", "--workers", "2"])
    assert e.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    monkeypatch.setattr(C, "visible_gpus", lambda: ["0"])
    assert main([*argv, "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("heldout train: error: --workers 2: only 1 GPUs are visible (0), and "
                   "TensorFlow cannot share a GPU between processes; give at most --workers 1, "
                   "or set CUDA_VISIBLE_DEVICES=-1 for CPU workers"), err
