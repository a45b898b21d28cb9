"""Ctrl-C (issue 19): one line on stderr, exit status 130, workers stopped, no scratch left.

`predict`, `train` and `export` say how many runs were complete when they stopped (their work
resumes: the same command again goes on); every other command says only that it was
interrupted. The end-to-end tests do what a terminal does: the command runs in its own process
group with SIGINT at its default (a background child of a non-interactive shell ignores SIGINT,
which would test nothing) and the whole group is signalled, Dask's worker processes included.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from predict_helpers import REPO, RUNS, reuse_runs

from heldout import experiment as ex
from heldout.cli import main
from heldout.errors import Interrupted

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), "TF_CPP_MIN_LOG_LEVEL": "2"}
RESUME = "run the same command to resume"
#: A tqdm progress line ("predict:  12%|█▎   | 3/24 [...]"): the bar is not part of the message.
PROGRESS = re.compile(r"^[^|]*\d+%\|")


# --------------------------------------------------------------------------------------------
# In this process: Ctrl-C as a KeyboardInterrupt raised where the work is.


def cli(*argv):
    """`heldout.cli.main`, failing the test (not stopping pytest) when Ctrl-C escapes it."""
    try:
        return main([str(a) for a in argv])
    except KeyboardInterrupt as e:
        pytest.fail(f"{type(e).__name__} escaped heldout.cli.main")


def interrupted(call, *args, **kwargs) -> Interrupted:
    """The `Interrupted` that `call` raises (failing the test on a bare KeyboardInterrupt)."""
    try:
        call(*args, **kwargs)
    except Interrupted as e:
        return e
    except KeyboardInterrupt:
        pytest.fail(f"{call.__name__} raised a bare KeyboardInterrupt, not Interrupted")
    pytest.fail(f"{call.__name__} was not interrupted")


def test_every_command_answers_ctrl_c_in_one_line(monkeypatch, capsys, tmp_path):
    from heldout.cli import scores

    def ctrl_c(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(scores, "estimate_command", ctrl_c)
    status = cli("estimate", tmp_path, "--out", tmp_path / "e.npz")
    out, err = capsys.readouterr()
    assert (status, out, err) == (130, "", "heldout estimate: interrupted\n")

    def stopped(args):
        raise Interrupted(14, 64)

    monkeypatch.setattr(scores, "estimate_command", stopped)
    status = cli("estimate", tmp_path, "--out", tmp_path / "e.npz")
    out, err = capsys.readouterr()
    assert (status, out) == (130, "")
    assert err == f"heldout estimate: interrupted: 14 of 64 runs completed; {RESUME}\n"


def test_interrupted_is_a_keyboard_interrupt_with_the_counts():
    e = Interrupted(3, 10)
    assert isinstance(e, KeyboardInterrupt) and not isinstance(e, Exception)
    assert (e.completed, e.total, str(e)) == (3, 10, "interrupted: 3 of 10 runs completed")


def test_sigint_held_records_ctrl_c_and_blocks_it_in_threads_started_inside():
    from heldout.cluster import sigint_held

    def blocked_in_new_thread():
        found = []
        thread = threading.Thread(
            target=lambda: found.append(signal.SIGINT in signal.pthread_sigmask(
                signal.SIG_BLOCK, [])))
        thread.start()
        thread.join()
        return found[0]

    handler = signal.getsignal(signal.SIGINT)
    with sigint_held() as received:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt in here
        assert blocked_in_new_thread()  # Dask's event loop and the workers it starts
    assert received == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is handler and not blocked_in_new_thread()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


def test_local_workers_ignore_ctrl_c_and_keep_their_files_in_the_scratch_space():
    from heldout.cluster import worker_specs

    for gpus in ([], ["0"]):
        (spec,) = worker_specs(1, gpus, ["heldout.quiet"], "/scratch/x").values()
        options = spec["options"]
        assert options["preload"] == ["heldout.cluster", "heldout.quiet"]  # dask_setup first
        assert options["local_directory"] == "/scratch/x"
        assert options["env"]["TMPDIR"] == "/scratch/x"


def test_predict_in_process_raises_interrupted_with_the_store_count(tmp_path, fmnist_experiment,
                                                                     fmnist_dir, monkeypatch):
    from heldout.data import DatasetSpec
    from heldout.predict import engine, predict
    from heldout.predict import store as st

    reuse_runs(fmnist_experiment, tmp_path / "exp", 4)
    evaluate, calls = engine.evaluate_run, []

    def evaluate_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third run is evaluated
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(engine, "evaluate_run", evaluate_then_stop)
    spec = DatasetSpec(dataset_npz=str(fmnist_dir / "dataset.npz"))
    out = tmp_path / "s.zarr"
    e = interrupted(predict, tmp_path / "exp", spec, "test", out, progress=False)
    assert (e.completed, e.total) == (2, 4)
    assert int(st.completed(str(out)).sum()) == 2
    monkeypatch.undo()
    again = predict(tmp_path / "exp", spec, "test", out, progress=False)
    assert again.ok and (again.resumed, again.evaluated) == (2, 2)


def test_train_in_process_raises_interrupted_with_the_complete_runs(tmp_path, fmnist_dir,
                                                                    monkeypatch):
    from heldout import train as T
    from heldout.data import DatasetSpec, load_dataset

    dataset = load_dataset(DatasetSpec(dataset_npz=str(fmnist_dir / "dataset.npz"),
                                       train_size=200), ("train", "test"))
    config = T.TrainConfig(arch="mlp", epochs=1, batch_size=50, path="per_step")
    T.train_experiment(tmp_path, dataset, 0.5, [0], config, progress=False)
    train_run, calls = T.groups.train_model_run, []

    def train_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second run of this call trains
        return train_run(*args, **kwargs)

    monkeypatch.setattr(T.groups, "train_model_run", train_then_stop)
    e = interrupted(T.train_experiment, tmp_path, dataset, 0.5, range(4), config, progress=False)
    assert (e.completed, e.total) == (2, 4)  # run 0 before, run 1 now
    assert len(ex.open_experiment(tmp_path, strict=True)) == 2  # nothing half-written left


def test_export_counts_the_runs_exported_when_interrupted(tmp_path, fmnist_experiment,
                                                          monkeypatch, capsys):
    from heldout.export import runs as export_runs

    export_run, calls = export_runs.export_run, []

    def export_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return export_run(*args, **kwargs)

    monkeypatch.setattr(export_runs, "export_run", export_then_stop)
    argv = ["export", fmnist_experiment, "--format", "npz", "--out", tmp_path / "x"]
    status = cli(*argv)
    out, err = capsys.readouterr()
    assert status == 130, err
    assert _message(err) == [f"heldout export: interrupted: 1 of 3 runs completed; {RESUME}"]
    assert out.splitlines()[0].startswith(f"{RUNS[0]}: exported ")
    monkeypatch.undo()
    assert cli(*argv) == 0
    assert "export npz: 2 exported, 1 already there, 0 failed" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# The real thing: SIGINT to the command's process group.


#: Dask warns when making its scratch directories takes over a second, as it may on a loaded
#: test machine: a warning about the machine, at start-up, not about Ctrl-C.
SLOW_DISK_WARNING = "ignore:Creating scratch directories is taking:UserWarning"


def _start_in_own_group():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setsid()


def ctrl_c(tmp_path, argv, ready, timeout=300):
    """Runs `heldout *argv` as a terminal would, sends SIGINT to its process group once
    `ready()`, and returns (exit status, stdout, stderr, what is left in its TMPDIR); fails when
    any process of the group outlives it by more than 30 s."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "heldout", *map(str, argv)],
                                   env={**ENV, "TMPDIR": str(scratch),
                                        "PYTHONWARNINGS": SLOW_DISK_WARNING}, stdout=stdout,
                                   stderr=stderr, cwd=tmp_path, preexec_fn=_start_in_own_group)
    group = process.pid
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, f"finished before Ctrl-C:\n{err.read_text()}"
            assert time.monotonic() < deadline, f"not ready in time:\n{err.read_text()}"
            time.sleep(0.1)
        os.killpg(group, signal.SIGINT)
        status = process.wait(timeout=120)
        deadline = time.monotonic() + 30
        while True:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break  # every process of the group has stopped
            assert time.monotonic() < deadline, subprocess.run(
                ["ps", "-o", "pid,args", "-g", str(group)], capture_output=True, text=True).stdout
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait()
    return status, out.read_text(), err.read_text(), sorted(os.listdir(scratch))


def _message(stderr):
    lines = [line for part in stderr.splitlines() for line in part.split("\r")]
    return [line for line in lines if line.strip() and not PROGRESS.match(line)]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_ctrl_c_in_predict(tmp_path, fmnist_experiment, fmnist_dir, workers):
    from heldout.predict import predict
    from heldout.predict import store as st

    reuse_runs(fmnist_experiment, tmp_path / "exp", 6)
    out = tmp_path / "s.zarr"

    def completed():
        return int(st.completed(str(out)).sum()) if st.is_store(str(out)) else 0

    data = fmnist_dir / "dataset.npz"
    status, stdout, stderr, left = ctrl_c(
        tmp_path, ["predict", tmp_path / "exp", "--dataset_npz", data, "--split", "test",
                   "--out", out, "--workers", workers], lambda: completed() >= 1)
    done = completed()
    assert (status, _message(stderr), stdout) == (
        130, [f"heldout predict: interrupted: {done} of 6 runs completed; {RESUME}"], ""), stderr
    assert 1 <= done < 6 and left == []
    from heldout.data import DatasetSpec

    again = predict(tmp_path / "exp", DatasetSpec(dataset_npz=str(data)), "test", out,
                    progress=False)
    assert again.ok and (again.resumed, again.evaluated) == (done, 6 - done)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_ctrl_c_in_train(tmp_path, fmnist_dir, workers):
    exp = tmp_path / "exp"

    def complete():
        ratio = exp / "0.5"
        return sum((ratio / n / "aux_arrays.npz").exists() for n in os.listdir(ratio)
                   if n.isdigit()) if ratio.is_dir() else 0

    status, stdout, stderr, left = ctrl_c(
        tmp_path, ["train", exp, "--dataset_npz", fmnist_dir / "dataset.npz", "--arch", "mlp",
                   "--ratio", "0.5", "--num_runs", "40", "--epochs", "4", "--path", "per_step",
                   "--workers", workers, "--quiet"], lambda: complete() >= 1)
    done, message = complete(), _message(stderr)
    assert (status, message[-1]) == (
        130, f"heldout train: interrupted: {done} of 40 runs completed; {RESUME}"), stderr
    assert [line.split(" at ratio")[0] for line in message[:-1]] == ["training 40 runs of mlp"]
    assert "Traceback" not in stderr and stdout == "" and left == []
    assert 1 <= done < 40
    # Nothing half-written counts, and nothing of the stopped runs is left behind.
    assert not [n for n in os.listdir(exp / "0.5") if ".tmp-" in n]
    assert len(ex.open_experiment(exp, strict=True)) == done


@pytest.mark.slow
def test_ctrl_c_in_export(tmp_path, fmnist_experiment):
    reuse_runs(fmnist_experiment, tmp_path / "exp", 12)
    out = tmp_path / "exported"

    def exported():
        return len(list(out.glob("0.5/*/aux_arrays.npz")))

    status, stdout, stderr, left = ctrl_c(
        tmp_path, ["export", tmp_path / "exp", "--format", "safetensors", "--out", out],
        lambda: exported() >= 1)
    done = exported()
    assert (status, _message(stderr)) == (
        130, [f"heldout export: interrupted: {done} of 12 runs completed; {RESUME}"]), stderr
    assert 1 <= done < 12 and left == []
    assert len(stdout.splitlines()) == done
