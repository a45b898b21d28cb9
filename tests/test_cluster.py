"""`heldout.cluster` on a worker with several threads: the task functions of `heldout train` and
`heldout predict` keep one model per worker (restored run after run, or trained group after
group), so a worker must run them one at a time even when it has more threads (`dask worker`
starts one thread per core unless told `--nthreads 1`); side by side, two tasks would restore
or train into the same model and mix their weights with no error."""

import threading
import time

import pytest

from heldout import cluster as C
from heldout.errors import HeldoutError

pytestmark = pytest.mark.slow  # a Dask cluster, as the other Dask modules' tests


class _Overlap:
    """Counts the tasks inside a section at once."""

    def __init__(self):
        self.lock, self.active, self.most = threading.Lock(), 0, 0

    def enter_and_fail(self, *args, **kwargs):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.3)
        with self.lock:
            self.active -= 1
        raise HeldoutError("stopped here by the test")


@pytest.fixture(scope="module")
def threaded_worker():
    """One in-process Dask worker with 2 threads (so monkeypatches reach its tasks)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield C.Dask(client)


def test_train_tasks_use_a_workers_trainer_one_at_a_time(threaded_worker, monkeypatch, fmnist_dir):
    from heldout.data import DatasetSpec
    from heldout.train import TrainConfig, fanout

    overlap = _Overlap()
    monkeypatch.setattr(fanout, "process_state", overlap.enter_and_fail)
    spec = DatasetSpec(dataset_npz=str(fmnist_dir / "dataset.npz"), train_size=100)
    task = fanout.TrainTask(spec, None, TrainConfig(arch="mlp"), "0.5", "/nonexistent/0.5")
    results = list(fanout.train_on_dask(threaded_worker, task, [[0], [1]]))
    assert [r.error for r in results] == ["stopped here by the test"] * 2
    assert overlap.most == 1


def test_predict_tasks_use_a_workers_model_one_at_a_time(threaded_worker, monkeypatch,
                                                         fmnist_experiment):
    from heldout.cluster import run_tasks
    from heldout.predict import engine

    overlap = _Overlap()
    monkeypatch.setattr(engine, "_state", overlap.enter_and_fail)
    run = str(fmnist_experiment / "0.5" / "0")
    args = [(None, row, run) for row in range(2)]
    results = [r for _, r, _ in run_tasks(threaded_worker, engine.evaluate_run, args)]
    assert [r.error for r in results] == ["stopped here by the test"] * 2
    assert overlap.most == 1
