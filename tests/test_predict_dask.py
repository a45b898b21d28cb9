"""The predictions store on Dask: a local cluster, an external one (scheduler file on
127.0.0.1), SIGKILL of the command and of one worker, an unreachable scheduler."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from predict_helpers import REPO, assert_rows_match, assert_stores_equal, reuse_runs

from heldout.cli import main as cli_main
from heldout.data import DatasetSpec
from heldout.predict import open_store, predict
from heldout.predict import store as st

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def spec(fmnist_dir):
    return DatasetSpec(dataset_npz=str(fmnist_dir / "dataset.npz"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fmnist_experiment, spec):
    """The test-split store from `--workers 0`."""
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    assert predict(fmnist_experiment, spec, "test", out, progress=False).ok
    return open_store(out)


class Cluster:
    """`dask scheduler --scheduler-file` and `dask worker --no-nanny` processes on 127.0.0.1."""

    def __init__(self, directory, workers: int):
        self.file = str(directory / "scheduler.json")
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "dask", "scheduler", "--scheduler-file", self.file,
             "--host", "127.0.0.1", "--port", "0", "--no-dashboard"],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.file):
            assert time.monotonic() < deadline and self.scheduler.poll() is None
            time.sleep(0.2)
        self.workers = [
            subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", "--scheduler-file", self.file,
                 "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(workers)
        ]
        from distributed import Client

        with Client(scheduler_file=self.file, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)

    def close(self):
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """One external cluster (a scheduler and 2 workers) for the module's tests; the last test
    using it kills one of its workers."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), workers=2)
    yield cluster
    cluster.close()


@pytest.mark.slow
def test_local_cluster_and_external_cluster_equal_workers_0(tmp_path, fmnist_experiment, spec,
                                                            reference, external):
    local = predict(fmnist_experiment, spec, "test", tmp_path / "local.zarr", workers=2,
                    progress=False)
    assert local.ok and local.evaluated == 3 and local.matched == local.total == 1500
    assert_stores_equal(open_store(tmp_path / "local.zarr"), reference)
    remote = predict(fmnist_experiment, spec, "test", tmp_path / "ext.zarr",
                     scheduler=external.file, progress=False)
    assert remote.ok and remote.evaluated == 3
    assert_stores_equal(open_store(tmp_path / "ext.zarr"), reference)


def _wait_completed(out, at_least: int, process=None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if st.is_store(out) and st.completed(out).sum() >= at_least:
            return
        assert time.monotonic() < deadline, "no run completed in time"
        assert process is None or process.poll() is None, "finished before it was killed"
        time.sleep(0.1)


@pytest.mark.slow
def test_sigkill_of_the_command_then_resume(tmp_path, fmnist_experiment, fmnist_dir, spec,
                                            reference):
    sources = reuse_runs(fmnist_experiment, tmp_path / "exp", 5)
    out = tmp_path / "s.zarr"
    process = subprocess.Popen(
        [sys.executable, "-m", "heldout", "predict", str(tmp_path / "exp"), "--dataset_npz",
         str(fmnist_dir / "dataset.npz"), "--split", "test", "--out", str(out), "--workers",
         "0"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_completed(out, 1, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = int(st.completed(out).sum())
    assert 1 <= before < 5
    summary = predict(tmp_path / "exp", spec, "test", out, progress=False)
    assert summary.ok and summary.resumed == before and summary.evaluated == 5 - before
    assert_rows_match(open_store(out), reference, sources)


@pytest.mark.slow
def test_sigkill_of_one_worker_loses_only_its_run(tmp_path, fmnist_experiment, spec, reference,
                                                  external):
    sources = reuse_runs(fmnist_experiment, tmp_path / "exp", 8)
    out = tmp_path / "s.zarr"
    results = []
    thread = threading.Thread(target=lambda: results.append(predict(
        tmp_path / "exp", spec, "test", out, scheduler=external.file, progress=False)))
    thread.start()
    _wait_completed(out, 1)
    os.kill(external.workers[0].pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    # The lost worker's task went to the other worker: every run completed, each once.
    assert results[0].ok and results[0].evaluated == 8
    again = predict(tmp_path / "exp", spec, "test", out, progress=False)
    assert again.ok and again.evaluated == 0 and again.resumed == 8
    assert_rows_match(open_store(out), reference, sources)


@pytest.mark.slow
def test_unreachable_scheduler_one_line_error(tmp_path, fmnist_experiment, fmnist_dir, capsys):
    out = tmp_path / "s.zarr"
    argv = ["predict", str(fmnist_experiment), "--dataset_npz", str(fmnist_dir / "dataset.npz"),
            "--split", "test", "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.match(r"heldout predict: error: --scheduler tcp://127\.0\.0\.1:9: cannot connect",
                    err), err
    assert not os.path.exists(out)
