"""Dask clusters for heldout: a local cluster of N single-threaded worker processes, pinned one
per GPU, or an existing scheduler.

Used by `heldout.predict` and `heldout.train` alike: `connect` gives a `Dask` (a client and the
resources each task asks for), `run_tasks` maps a task function over its arguments with retries
and yields the outcomes as they finish, and `worker_state` is the per-process state (a dataset,
a model, a compiled step) a task keeps on its worker for the next tasks, used by one task at a
time however many threads the worker has.

GPU pinning happens when a worker process starts: each worker is a `distributed.Nanny` whose
``env`` sets ``CUDA_VISIBLE_DEVICES`` to its own GPU before the worker process is spawned, so
TensorFlow in that process only ever sees that GPU (TensorFlow takes every GPU it sees and
never hands memory back, so two processes may not share one).

Ctrl-C: a terminal sends SIGINT to the whole process group, so the worker processes of a local
cluster receive it as well as the command. Dask leaves a nanny's worker process to Python's
default, a `KeyboardInterrupt` that ends it with a traceback. Here the workers never see it:
they are started with SIGINT blocked (`sigint_held`, around the cluster's start, which also
holds the command's Ctrl-C back until the cluster is up) and ignore it from their first
preload on (`dask_setup`); the command's `KeyboardInterrupt` closes the cluster on its way out
(`connect`), which stops the workers (Dask kills a worker still busy after 4 s). Dask's scratch
space (``dask-scratch-space``) and the workers' temporary files go to a directory of the
cluster's own (`scratch_directory`), removed when it is closed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from heldout.errors import ClusterError


def visible_gpus() -> list[str]:
    """The GPU ids worker processes may be pinned to.

    ``CUDA_VISIBLE_DEVICES`` when set (``-1`` or empty: none), else one id per GPU that
    ``nvidia-smi -L`` lists (none without ``nvidia-smi``).
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU")]


def default_workers() -> int:
    """One worker per visible GPU (`visible_gpus`), else one."""
    return max(1, len(visible_gpus()))


def dask_setup(worker) -> None:
    """Dask preload hook of every local worker (`worker_specs`), run when its process starts.

    The worker ignores SIGINT: Ctrl-C in a terminal reaches the whole process group, and the
    command stops its workers by closing its cluster, so a worker stopping on its own would
    only print a traceback. Its progress bars (tqdm, all disabled on workers) share a thread
    lock instead of tqdm's default multiprocessing lock: that one is a named semaphore, which a
    worker killed while busy (Dask kills a worker whose task still runs 4 s after it was asked
    to close) never unregisters, and Python's resource tracker then warns about it as the
    command exits.
    """
    from tqdm import tqdm

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())


def worker_specs(workers: int, gpus: Sequence[str], preload: Sequence[str] = (),
                 local_directory: str | None = None) -> dict[str, dict]:
    """The `distributed.SpecCluster` worker specs of a local cluster.

    Args:
      workers: N >= 1 worker processes.
      gpus: the visible GPU ids; with any, worker i gets GPU ``gpus[i]`` (its environment's
        ``CUDA_VISIBLE_DEVICES``) and the abstract resource ``GPU: 1``.
      preload: modules each worker imports when it starts (Dask's ``preload``), after this
        module (`dask_setup`: the worker ignores SIGINT), e.g. ``heldout.quiet``, which imports
        TensorFlow without its start-up lines.
      local_directory: where the workers put Dask's scratch space and their temporary files
        (``TMPDIR``); default: Dask's ``temporary-directory``, else the system's temporary
        directory.

    Returns:
      {name: {"cls": Nanny, "options": {...}}}: single-threaded workers, each with an equal
      share of the machine's memory.

    Raises:
      ClusterError: `workers` < 1, or more workers than GPUs.
    """
    from distributed import Nanny
    from distributed.system import MEMORY_LIMIT

    if workers < 1:
        raise ClusterError(f"`workers`={workers}: a local cluster needs at least 1 worker")
    if gpus and workers > len(gpus):
        raise ClusterError(
            f"`workers`={workers}: only {len(gpus)} GPUs are visible ({','.join(gpus)}), and "
            "TensorFlow cannot share a GPU between processes; give at most "
            f"`workers`={len(gpus)}, or set CUDA_VISIBLE_DEVICES=-1 for CPU workers"
        )
    options = {"nthreads": 1, "host": "127.0.0.1", "dashboard": False,
               "memory_limit": MEMORY_LIMIT // workers, "silence_logs": logging.ERROR,
               "preload": ["heldout.cluster", *preload],  # dask_setup: ignore SIGINT
               "local_directory": local_directory}
    if local_directory is not None:
        # A worker's temporary files (TensorFlow's autograph modules, ...) go with the scratch
        # space: a worker killed mid-task (Dask kills a worker still busy 4 s after it was
        # asked to close) never removes them itself.
        options["env"] = {"TMPDIR": local_directory}
    if not gpus:
        return {f"cpu-{i}": {"cls": Nanny, "options": dict(options)} for i in range(workers)}
    return {
        f"gpu-{gpu}": {"cls": Nanny, "options": {
            **options, "env": {**options.get("env", {}), "CUDA_VISIBLE_DEVICES": gpu},
            "resources": {"GPU": 1}}}
        for gpu in gpus[:workers]
    }


def local_cluster(workers: int, preload: Sequence[str] = (), local_directory: str | None = None):
    """A `distributed.SpecCluster` on 127.0.0.1 (no dashboard) of `workers` single-threaded
    worker processes, pinned one per visible GPU when there are GPUs, each importing the
    modules `preload` when it starts and ignoring SIGINT (`worker_specs`), with Dask's scratch
    space in `local_directory` (default: Dask's).

    Raises:
      ClusterError: as `worker_specs`.
    """
    from distributed import Scheduler, SpecCluster

    specs = worker_specs(workers, visible_gpus(), preload, local_directory)
    # No dashboard; its HTTP server (health checks) on a free port.
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False,
                                               "dashboard_address": "127.0.0.1:0",
                                               "local_directory": local_directory}}
    return SpecCluster(workers=specs, scheduler=scheduler, silence_logs=logging.ERROR,
                       name="heldout")


@dataclasses.dataclass(frozen=True)
class Dask:
    """A connected cluster.

    Attributes:
      client: the `distributed.Client`.
      resources: what each task asks for (``{"GPU": 1}`` on a local cluster pinned to GPUs),
        or None.
    """

    client: Any
    resources: dict[str, int] | None = None


@contextlib.contextmanager
def connect(scheduler: str | None, workers: int, preload: Sequence[str] = ()
            ) -> Iterator[Dask]:
    """A client of an existing scheduler, or of a new local cluster; closed (the cluster shut
    down) when the block ends.

    Args:
      scheduler: an address (``tcp://host:8786``) or scheduler file of a running Dask
        scheduler (e.g. from ``dask scheduler --scheduler-file`` or dask-jobqueue), or None.
      workers: with `scheduler` None, the worker processes of a `local_cluster`.
      preload: with `scheduler` None, what each worker imports when it starts.

    Raises:
      ClusterError: no such scheduler file, the scheduler cannot be reached within 5 s, or as
        `local_cluster`.
    """
    from distributed import Client

    if scheduler is not None:
        if not os.path.isfile(scheduler) and _names_a_file(scheduler):
            raise ClusterError(
                f"`scheduler`={scheduler}: no such scheduler file (give the file that `dask "
                "scheduler --scheduler-file` writes, or an address such as tcp://host:8786)")
        with sigint_held() as received:  # as `run_tasks` says
            try:
                if os.path.isfile(scheduler):
                    client = Client(scheduler_file=scheduler, timeout="5s")
                else:
                    client = Client(scheduler, timeout="5s")
            except (OSError, TimeoutError, ValueError) as e:
                raise ClusterError(f"`scheduler`={scheduler}: cannot connect "
                                   f"({type(e).__name__}: {e})") from e
        try:
            if received:
                raise KeyboardInterrupt
            yield Dask(client)
        finally:
            with sigint_held():
                client.close()
        return
    with scratch_directory() as scratch, _local_client(workers, preload, scratch) as (
            cluster, client):
        pinned = any("resources" in s["options"] for s in cluster.worker_spec.values())
        yield Dask(client, {"GPU": 1} if pinned else None)


@contextlib.contextmanager
def _local_client(workers: int, preload: Sequence[str], scratch: str) -> Iterator[tuple]:
    """A `local_cluster` (scratch space in `scratch`) and its client, both started and closed
    with Ctrl-C held back (`sigint_held`): Dask cannot close a cluster stopped half-started or
    half-closed (it fails at exit, with a traceback). A Ctrl-C held back while they start is
    raised once they are up, and closes them; after Ctrl-C they are closed without Dask's log
    (e.g. the scheduler's error about results the client stopped gathering)."""
    from multiprocessing import resource_tracker

    from distributed import Client
    from distributed.utils import silence_logging_cmgr

    # Python's resource tracker process, started by the first thread that needs it (here Dask's
    # event loop, for the nannies' queues), is started with SIGINT blocked in that thread and
    # then unblocks it there (bpo-33613): started first from here, it leaves the loop blocked.
    resource_tracker.ensure_running()
    cluster = client = None
    quiet = contextlib.nullcontext()
    try:
        with sigint_held() as received:
            cluster = local_cluster(workers, preload, scratch)
            client = Client(cluster)
        if received:
            raise KeyboardInterrupt
        yield cluster, client
    except KeyboardInterrupt:
        quiet = silence_logging_cmgr(logging.CRITICAL)
        raise
    finally:
        with sigint_held(), quiet:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()


@contextlib.contextmanager
def sigint_held() -> Iterator[list[int]]:
    """Holds Ctrl-C back in the block, in the main thread (elsewhere Python receives no
    KeyboardInterrupt, and nothing is done): a SIGINT is recorded in the list yielded instead
    of raised, and SIGINT is blocked in this thread, so the threads it starts (Dask's event
    loop, which starts the worker processes) and their processes are born with it blocked and
    never receive the Ctrl-C that a terminal sends to the whole process group."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield received
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def scratch_directory() -> Iterator[str]:
    """A new directory for a local cluster's scratch space, in Dask's ``temporary-directory``
    (else the system's temporary directory), removed with everything in it when the block
    ends, however it ends (Dask itself leaves its ``dask-scratch-space`` and lock files)."""
    import dask

    parent = dask.config.get("temporary-directory", None) or None
    path = tempfile.mkdtemp(prefix="heldout-dask-", dir=parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _names_a_file(scheduler: str) -> bool:
    """Whether `scheduler` can only be a file name: a ``.json`` name, or a path (a separator)
    without the ``://`` of an address."""
    return scheduler.endswith(".json") or ("://" not in scheduler and os.sep in scheduler)


def check(scheduler: str | None, workers: int) -> None:
    """Fails early, before any work: `scheduler` cannot be reached (one short connection), or
    `workers` cannot be started (as `worker_specs`); nothing is started.

    Raises:
      ClusterError: as above.
    """
    if scheduler is not None:
        with connect(scheduler, 0):
            return
    if workers > 0:
        worker_specs(workers, visible_gpus())


def run_tasks(
    dask: Dask, fn: Callable, args: Sequence[tuple], retries: int = 1
) -> Iterator[tuple[int, Any, BaseException | None]]:
    """Runs ``fn(*args[i])`` for every i on the cluster, as `Client.map` does.

    Tasks are never merged (``pure=False``) and ask for `Dask.resources`. A task that raises
    is tried again `retries` times; a task whose worker dies is given to another worker by the
    scheduler (up to its ``allowed-failures``).

    Yields:
      (i, result, None) or (i, None, exception) per task, in the order they finish.
    """
    from distributed import as_completed

    if not args:
        return
    # Calls into the client hold Ctrl-C back until they return (`sigint_held`): Dask's sync()
    # fails on a KeyboardInterrupt that arrives before its coroutine started (a NameError
    # logged from its event loop), while waiting in `as_completed` takes one cleanly.
    with sigint_held() as received:
        futures = dask.client.map(fn, *zip(*args, strict=True), retries=retries, pure=False,
                                  resources=dask.resources)
    position = {future.key: i for i, future in enumerate(futures)}
    for future in as_completed(futures):
        if received:
            raise KeyboardInterrupt
        i = position[future.key]
        with sigint_held() as received:
            try:
                outcome = i, future.result(), None
            except Exception as e:  # noqa: BLE001 - a task's bug or a worker lost for good
                outcome = i, None, e
        yield outcome
    if received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def worker_state(name: str) -> Iterator[dict]:
    """This Dask worker's dict `name` (`worker_cache`), held by one task at a time.

    The state (one model restored run after run, or trained group after group) is not safe to
    share: a worker started with several threads (``dask worker`` starts one per core unless
    given ``--nthreads 1``; dask-jobqueue's workers often have several) would run two tasks
    side by side in it and mix their weights with no error. So every task of this worker
    waits for one lock (one per worker process, shared by all names: they share its device).

    Raises:
      ValueError: not called from a task on a Dask worker.
    """
    from distributed import get_worker

    lock = vars(get_worker()).setdefault("_heldout_lock", threading.Lock())
    with lock:
        yield worker_cache(name)


def worker_cache(name: str) -> dict:
    """This Dask worker's dict `name`, kept across its tasks (created empty on first use).

    Raises:
      ValueError: not called from a task on a Dask worker.
    """
    from distributed import get_worker

    worker = get_worker()
    cache = getattr(worker, name, None)
    if cache is None:
        cache = {}
        setattr(worker, name, cache)
    return cache
