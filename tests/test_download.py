"""Tests for heldout.download, .fetch, .extract and `heldout download` / `heldout extract`.

A real HTTP server on 127.0.0.1 (http.server, in a thread) serves a generated tar.gz in the
release layout; it can misbehave on demand: ignore Range, answer 206 from another byte, answer
416, cut the connection after some bytes, change the file between requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import socket
import struct
import tarfile
import threading
import tracemalloc
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from heldout.cli import main
from heldout.experiment import load_aux_arrays, make_aux_arrays, open_experiment, write_aux_arrays
from heldout.release.archives import MemberSelection
from heldout.release.download import ChecksumError, download_file, download_release, stream_extract
from heldout.release.http import DownloadError, HttpOptions
from heldout.release.tar import ArchiveError, extract_archive

OPTIONS = HttpOptions(chunk_size=4096, max_retries=3, retry_wait=0.0, timeout=10.0)
RATIOS = ("0.5", "0.7", "1.0")
RUN_IDS = (0, 3, 7)  # not contiguous, as in the release


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch):
    """Talk to 127.0.0.1 directly even where the environment sets an HTTP proxy."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")


# --------------------------------------------------------------------------------------------
# A generated release.


def make_release_tree(root, experiment="exp", ckpt_bytes=600, seed=0) -> dict[str, bytes]:
    """Writes `<experiment>/<ratio>/<run_id>/...` under `root`; returns relpath -> content."""
    rng = np.random.default_rng(seed)
    n_train, n_test = 40, 12
    for ratio in RATIOS:
        for run_id in RUN_IDS:
            run_dir = os.path.join(root, experiment, ratio, str(run_id))
            subset = rng.choice(n_train, int(round(n_train * float(ratio))), replace=False)
            aux = make_aux_arrays(subset, rng.random(n_train) < 0.8, rng.random(n_test) < 0.7)
            write_aux_arrays(os.path.join(run_dir, "aux_arrays.npz"), aux)
            ckpt_dir = os.path.join(run_dir, "checkpoints")
            os.makedirs(ckpt_dir)
            with open(os.path.join(ckpt_dir, "ckpt-10.index"), "wb") as f:
                f.write(rng.bytes(ckpt_bytes // 8))
            with open(os.path.join(ckpt_dir, "ckpt-10.data-00000-of-00001"), "wb") as f:
                f.write(rng.bytes(ckpt_bytes))
            with open(os.path.join(ckpt_dir, "checkpoint"), "w") as f:
                f.write('model_checkpoint_path: "ckpt-10"\n')
    return files_under(root)


def files_under(root) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root).replace(os.sep, "/")] = f.read()
    return out


def make_tar_gz(src_root, path, compresslevel=6) -> bytes:
    with tarfile.open(path, "w:gz", compresslevel=compresslevel) as tar:
        for name in sorted(os.listdir(src_root)):
            tar.add(os.path.join(src_root, name), arcname=name)
    with open(path, "rb") as f:
        return f.read()


@dataclasses.dataclass
class Release:
    tree: dict[str, bytes]  # relpath -> content of every file
    archive: bytes
    md5: str
    path: str  # the archive on disk


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    base = tmp_path_factory.mktemp("release")
    tree = make_release_tree(base / "src")
    data = make_tar_gz(base / "src", base / "exp.tar.gz")
    return Release(tree, data, hashlib.md5(data).hexdigest(), str(base / "exp.tar.gz"))


def select(tree: dict[str, bytes], only=None, ratios=None) -> dict[str, bytes]:
    out = {}
    for name, content in tree.items():
        _exp, ratio, _run, *rest = name.split("/")
        kind = "aux_arrays" if rest == ["aux_arrays.npz"] else "checkpoints"
        if (only is None or kind in only) and (ratios is None or ratio in ratios):
            out[name] = content
    return out


# --------------------------------------------------------------------------------------------
# The test server.


@dataclasses.dataclass
class ServerState:
    """What the server serves and how it misbehaves.

    Attributes:
      files: URL path -> body.
      etag: sent as ETag when set.
      ignore_range: answer every request 200 with the whole body.
      range_shift: answer `Range: bytes=N-` with a 206 starting at N + range_shift.
      range_limit: answer a `Range` with at most this many bytes (a shorter 206, as RFC 7233
        allows).
      refuse_ranges: answer every `Range` request 416 without Content-Range.
      cuts: per request, in order: close the connection after this many body bytes (None:
        send everything).
      reset: cut with a TCP reset instead of a clean close.
      on_request: called with the request number before answering.
      stall_after: in the first response, wait for `resume` after this many body bytes (the
        connection stays open, so the client waits in a read); `stalled` is set then.
      log: (Range header, status, body bytes sent) per request, in arrival order; complete
        once `serve` has returned.
    """

    files: dict[str, bytes]
    etag: str | None = None
    ignore_range: bool = False
    range_shift: int = 0
    range_limit: int | None = None
    refuse_ranges: bool = False
    cuts: list[int | None] = dataclasses.field(default_factory=list)
    reset: bool = False
    on_request: Callable[[int], None] | None = None
    stall_after: int | None = None
    stalled: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)
    resume: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)
    log: list[tuple[str | None, int | None, int]] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @property
    def sent(self) -> int:
        return sum(n for _, _, n in self.log)


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # a stuck connection fails the test instead of hanging it

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        state: ServerState = self.server.state
        requested = self.headers.get("Range")
        with state.lock:  # numbered on arrival, so the log is in request order
            number = len(state.log)
            state.log.append((requested, None, 0))
        if state.on_request is not None:
            state.on_request(number)
        body = state.files.get(self.path)
        if body is None:
            state.log[number] = (requested, 404, 0)
            self.send_error(404)
            return
        total = len(body)
        status, start = 200, 0
        if requested is not None and not state.ignore_range:
            first = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if state.refuse_ranges or first >= total:
                state.log[number] = (requested, 416, 0)
                self.send_response(416)
                if not state.refuse_ranges:
                    self.send_header("Content-Range", f"bytes */{total}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, start = 206, min(max(first + state.range_shift, 0), total - 1)
        end = total  # one past the last byte sent
        if status == 206 and state.range_limit is not None:
            end = min(total, start + state.range_limit)
        self.send_response(status)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{total}")
        if state.etag is not None:
            self.send_header("ETag", state.etag)
        self.end_headers()
        cut = state.cuts[number] if number < len(state.cuts) else None
        stop = end if cut is None else min(end, start + cut)
        view = memoryview(body)
        sent = 0
        stall = state.stall_after if number == 0 else None
        try:
            for i in range(start, stop, 1 << 14):
                piece = view[i : min(i + (1 << 14), stop)]
                if stall is not None and sent + len(piece) > stall:
                    self.wfile.write(piece[: stall - sent])
                    self.wfile.flush()
                    state.stalled.set()
                    state.resume.wait(30)
                    piece, sent = piece[stall - sent :], stall
                    stall = None
                self.wfile.write(piece)
                sent += len(piece)
        except OSError:  # the client went away
            pass
        state.log[number] = (requested, status, sent)
        if stop < end:
            if state.reset:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for every handler: the log is then complete

    def handle_error(self, request, client_address):  # broken pipes are part of the tests
        pass


@contextlib.contextmanager
def serve(state: ServerState):
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def serve_release(release: Release, **misbehaviour):
    state = ServerState({"/exp.tar.gz": release.archive}, **misbehaviour)
    with serve(state) as base:
        yield base + "/exp.tar.gz", state


def get(url, dest, md5, keep_archive=False, selection=None, options=OPTIONS):
    return download_release(
        "exp",
        dest,
        selection,
        keep_archive=keep_archive,
        url=url,
        md5=md5,
        progress=False,
        options=options,
    )


def assert_extracted(dest, expected: dict[str, bytes], keep_archive: bool):
    """`dest` holds exactly the expected files (plus the archive when kept), nothing else."""
    found = files_under(dest)
    if keep_archive:
        assert found.pop("exp.tar.gz") is not None
    assert found == expected


# --------------------------------------------------------------------------------------------
# Full download, selection.


@pytest.mark.parametrize("keep_archive", [False, True], ids=["stream", "keep_archive"])
def test_full_download_checks_md5_and_extracts_every_run(release, tmp_path, keep_archive):
    with serve_release(release) as (url, state):
        result = get(url, tmp_path, release.md5, keep_archive)
    assert result.md5 == release.md5 and result.size == len(release.archive)
    assert state.log == [(None, 200, len(release.archive))]  # read once, in one request
    assert_extracted(tmp_path, release.tree, keep_archive)
    if keep_archive:
        assert result.archive == str(tmp_path / "exp.tar.gz")
        assert (tmp_path / "exp.tar.gz").read_bytes() == release.archive
    else:
        assert result.archive is None  # never stored
    summary = result.summary
    assert summary.runs_by_ratio == dict.fromkeys(RATIOS, len(RUN_IDS))
    assert summary.aux_arrays_by_ratio == dict.fromkeys(RATIOS, len(RUN_IDS))
    assert summary.files == len(release.tree) and summary.skipped == 0
    assert summary.experiments == (str(tmp_path / "exp"),)
    # The result is an experiment directory that heldout.experiment (and `heldout inspect`) opens.
    experiment = open_experiment(tmp_path / "exp", require_checkpoint=True, strict=True)
    assert experiment.ratios == list(RATIOS)
    assert [r.run_id for r in experiment.runs("0.7")] == list(RUN_IDS)
    for run in experiment:
        src = load_aux_arrays(
            os.path.join(
                os.path.dirname(release.path),
                "src",
                "exp",
                run.ratio,
                str(run.run_id),
                "aux_arrays.npz",
            )
        )
        got = run.load_aux()
        assert all(np.array_equal(got.to_dict()[k], v) for k, v in src.to_dict().items())
        assert len(got.subsample_idx) == round(40 * run.subset_ratio)
    text = summary.format()
    assert "Extracted 36 files" in text and f"heldout inspect {tmp_path / 'exp'}" in text
    assert re.search(r"0\.7\s+3\s+3", text)


@pytest.mark.parametrize("keep_archive", [False, True], ids=["stream", "keep_archive"])
def test_only_aux_arrays_extracts_just_those(release, tmp_path, keep_archive):
    with serve_release(release) as (url, _):
        result = get(url, tmp_path, release.md5, keep_archive, MemberSelection(("aux_arrays",)))
    expected = select(release.tree, only=("aux_arrays",))
    assert len(expected) == len(RATIOS) * len(RUN_IDS)
    assert_extracted(tmp_path, expected, keep_archive)
    assert result.summary.skipped == len(release.tree) - len(expected)
    assert result.summary.aux_arrays_by_ratio == dict.fromkeys(RATIOS, len(RUN_IDS))
    experiment = open_experiment(tmp_path / "exp", strict=True)
    assert len(experiment) == len(RATIOS) * len(RUN_IDS)
    assert not any(run.checkpoints() for run in experiment)


@pytest.mark.parametrize("keep_archive", [False, True], ids=["stream", "keep_archive"])
def test_ratios_extract_only_those_subset_ratios(release, tmp_path, keep_archive):
    selection = MemberSelection.from_args(None, "1,0.5,0.3")
    with serve_release(release) as (url, _):
        result = get(url, tmp_path, release.md5, keep_archive, selection)
    assert_extracted(tmp_path, select(release.tree, ratios=("0.5", "1.0")), keep_archive)
    assert open_experiment(tmp_path / "exp", strict=True).ratios == ["0.5", "1.0"]
    assert result.summary.runs_by_ratio == {"0.5": 3, "1.0": 3}
    assert result.summary.missing_ratios == (0.3,)
    assert result.summary.ratios_in_archive == RATIOS
    assert "ratio(s) 0.3 not in the archive (it has 0.5, 0.7, 1.0)" in result.summary.format()


def test_only_and_ratios_combine_on_a_local_archive(release, tmp_path):
    summary = extract_archive(
        release.path, tmp_path, MemberSelection(("checkpoints",), (0.7,)), progress=False
    )
    assert files_under(tmp_path) == select(release.tree, ("checkpoints",), ("0.7",))
    assert summary.runs_by_ratio == {"0.7": 3} and summary.aux_arrays_by_ratio == {"0.7": 0}


def test_plain_tar_archives_extract_too(release, tmp_path):
    path = tmp_path / "exp.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(os.path.join(os.path.dirname(release.path), "src", "exp"), arcname="./exp")
    extract_archive(path, tmp_path / "out", progress=False)
    assert files_under(tmp_path / "out") == release.tree


# --------------------------------------------------------------------------------------------
# Resume and misbehaving servers.


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
@pytest.mark.parametrize("keep_archive", [False, True], ids=["stream", "keep_archive"])
def test_resume_after_connection_cut_mid_transfer(release, tmp_path, keep_archive, reset):
    a, b = len(release.archive) // 3, len(release.archive) // 4
    with serve_release(release, cuts=[a, b], reset=reset) as (url, state):
        result = get(url, tmp_path, release.md5, keep_archive)
    assert_extracted(tmp_path, release.tree, keep_archive)
    ranges = [r for r, _, _ in state.log]
    statuses = [s for _, s, _ in state.log]
    # Each reconnection asks for the bytes after those already read; none is sent twice
    # (a reset may lose bytes already on the wire, which are then asked for again).
    assert statuses == [200, 206, 206] and ranges[0] is None
    first, second = (int(re.fullmatch(r"bytes=(\d+)-", r).group(1)) for r in ranges[1:])
    assert first <= a and second <= first + b
    if not reset:
        assert (first, second) == (a, a + b)
        assert state.sent == len(release.archive)
    assert sum("resuming" in e or "connection lost" in e for e in result.events) == 2


def test_keep_archive_resumes_a_partial_file_from_an_earlier_run(release, tmp_path):
    done = len(release.archive) // 2
    (tmp_path / "exp.tar.gz.part").write_bytes(release.archive[:done])
    with serve_release(release) as (url, state):
        result = download_file(
            url, tmp_path / "exp.tar.gz", release.md5, progress=False, options=OPTIONS
        )
    assert state.log == [(f"bytes={done}-", 206, len(release.archive) - done)]
    assert (tmp_path / "exp.tar.gz").read_bytes() == release.archive
    assert not (tmp_path / "exp.tar.gz.part").exists()
    assert result.size == len(release.archive) and result.md5 == release.md5


def test_a_second_process_on_the_same_partial_archive_is_refused(release, tmp_path):
    """Two --keep_archive downloads of one archive into one directory appended to the same
    <archive>.part: the MD5 failed and the work of both was lost (set aside as .bad-md5)."""
    from heldout.lock import try_lock, unlock

    done = len(release.archive) // 2
    (tmp_path / "exp.tar.gz.part").write_bytes(release.archive[:done])
    lock = str(tmp_path / "exp.tar.gz.part.lock")
    fd = try_lock(lock)  # as a live download holds it
    try:
        with serve_release(release) as (url, state):
            with pytest.raises(DownloadError, match=r"another process is downloading it into "
                               r".*exp\.tar\.gz\.part \(it holds .*exp\.tar\.gz\.part\.lock\)"):
                download_file(url, tmp_path / "exp.tar.gz", release.md5, progress=False,
                              options=OPTIONS)
        assert state.log == []
        assert (tmp_path / "exp.tar.gz.part").read_bytes() == release.archive[:done]
    finally:
        unlock(lock, fd)
    with serve_release(release) as (url, state):  # once it is gone, the download goes on
        download_file(url, tmp_path / "exp.tar.gz", release.md5, progress=False, options=OPTIONS)
    assert state.log == [(f"bytes={done}-", 206, len(release.archive) - done)]
    assert sorted(os.listdir(tmp_path)) == ["exp.tar.gz"]


@pytest.mark.parametrize("keep_archive", [False, True], ids=["stream", "keep_archive"])
def test_server_ignoring_range_gives_a_correct_file(release, tmp_path, keep_archive):
    cut = len(release.archive) // 2
    with serve_release(release, ignore_range=True, cuts=[cut]) as (url, state):
        result = get(url, tmp_path, release.md5, keep_archive)
    assert [(r, s) for r, s, _ in state.log] == [(None, 200), (f"bytes={cut}-", 200)]
    assert_extracted(tmp_path, release.tree, keep_archive)
    assert any("ignored Range" in e for e in result.events)


@pytest.mark.parametrize("shift", [-1000, 1000], ids=["earlier", "later"])
@pytest.mark.parametrize("keep_archive", [False, True], ids=["stream", "keep_archive"])
def test_206_starting_elsewhere_gives_a_correct_file(release, tmp_path, keep_archive, shift):
    cut = len(release.archive) // 2
    with serve_release(release, range_shift=shift, cuts=[cut]) as (url, state):
        result = get(url, tmp_path, release.md5, keep_archive)
    assert_extracted(tmp_path, release.tree, keep_archive)
    if shift < 0:  # bytes before the one asked for are skipped
        assert [(r, s) for r, s, _ in state.log] == [(None, 200), (f"bytes={cut}-", 206)]
        assert any("skipping 1,000 bytes" in e for e in result.events)
    else:  # a gap cannot be filled: the whole file is asked for again
        assert [(r, s) for r, s, _ in state.log] == [
            (None, 200),
            (f"bytes={cut}-", 206),
            (None, 200),
        ]
        assert any(f"starting at byte {cut + 1000:,}" in e for e in result.events)


@pytest.mark.parametrize("keep_archive", [False, True], ids=["stream", "keep_archive"])
def test_short_206_is_continued_not_taken_as_the_end(release, tmp_path, keep_archive):
    cut = len(release.archive) // 3
    limit = len(release.archive) // 5
    with serve_release(release, range_limit=limit, cuts=[cut]) as (url, state):
        get(url, tmp_path, release.md5, keep_archive)
    assert_extracted(tmp_path, release.tree, keep_archive)
    statuses = [s for _, s, _ in state.log]
    assert statuses[0] == 200 and len(statuses) >= 3 and set(statuses[1:]) == {206}
    assert state.sent == len(release.archive)


@pytest.mark.parametrize("with_size", [True, False], ids=["416-with-size", "416-bare"])
def test_416_for_an_already_complete_partial_file(release, tmp_path, with_size):
    (tmp_path / "exp.tar.gz.part").write_bytes(release.archive)
    with serve_release(release, refuse_ranges=not with_size) as (url, state):
        result = get(url, tmp_path, release.md5, keep_archive=True)
    assert_extracted(tmp_path, release.tree, keep_archive=True)
    assert state.sent == 0 or not with_size  # with a size, nothing is sent again
    assert state.log[0] == (f"bytes={len(release.archive)}-", 416, 0)
    if not with_size:  # a bare 416 proves nothing: the size comes from a plain request
        assert [s for _, s, _ in state.log] == [416, 200]
    assert result.md5 == release.md5


def test_bare_416_for_an_incomplete_file_falls_back_to_a_full_read(release, tmp_path):
    done = len(release.archive) // 3
    (tmp_path / "exp.tar.gz.part").write_bytes(release.archive[:done])
    with serve_release(release, refuse_ranges=True) as (url, state):
        get(url, tmp_path, release.md5, keep_archive=True)
    assert [s for _, s, _ in state.log] == [416, 200]
    assert_extracted(tmp_path, release.tree, keep_archive=True)


def test_partial_file_longer_than_the_remote_one_starts_over(release, tmp_path):
    (tmp_path / "exp.tar.gz.part").write_bytes(release.archive + b"junk")
    with serve_release(release) as (url, state):
        result = get(url, tmp_path, release.md5, keep_archive=True)
    assert [(r, s) for r, s, _ in state.log][-1] == (None, 200)
    assert_extracted(tmp_path, release.tree, keep_archive=True)
    assert any("starting over from byte 0" in e for e in result.events)


@pytest.mark.parametrize("keep_archive", [False, True], ids=["stream", "keep_archive"])
def test_connection_cut_every_time_is_a_clear_error(release, tmp_path, keep_archive):
    with serve_release(release, cuts=[100] + [0] * 10) as (url, state):
        with pytest.raises(
            DownloadError, match=r"giving up after 4 attempts in a row .* byte 100"
        ) as e:
            get(url, tmp_path / "dest", release.md5, keep_archive)
    if not keep_archive:
        assert "nothing was extracted yet: run the command again" in str(e.value)
    assert len(state.log) == 1 + OPTIONS.max_retries
    left = files_under(tmp_path / "dest")
    # No extracted file; only the partial download, kept for the next run to resume.
    assert left == ({"exp.tar.gz.part": release.archive[:100]} if keep_archive else {})


def give_up_half_way(release: Release, dest) -> tuple[dict[str, str], DownloadError]:
    """Streams `release` into `dest` with every connection after the first cut at once, so the
    download gives up half-way; returns the staged members and the error."""
    cut = len(release.archive) // 2
    with serve_release(release, cuts=[cut] + [0] * 10) as (url, _):
        with pytest.raises(DownloadError, match=r"giving up after 4 attempts") as e:
            get(url, dest, release.md5)
    staged = staged_members(dest, release.tree)
    assert staged and visible_files(dest) == {}
    return staged, e.value


def test_stream_given_up_keeps_its_members_for_the_next_run(big_release, tmp_path):
    staged, error = give_up_half_way(big_release, tmp_path)
    assert f"the {len(staged)} members extracted so far are kept in" in str(error)
    assert "`keep_archive`=True" in str(error)
    inodes = {name: os.stat(path).st_ino for name, path in staged.items()}
    with serve_release(big_release) as (url, _):
        result = get(url, tmp_path, big_release.md5)
    assert_extracted(tmp_path, big_release.tree, keep_archive=False)
    assert {name: os.stat(tmp_path / name).st_ino for name in staged} == inodes
    assert any(f"kept {len(staged)} of the members" in e for e in result.events)


def test_keep_archive_after_a_stopped_stream_removes_its_staging(big_release, tmp_path):
    give_up_half_way(big_release, tmp_path)
    with serve_release(big_release) as (url, _):
        result = get(url, tmp_path, big_release.md5, keep_archive=True)
    assert_extracted(tmp_path, big_release.tree, keep_archive=True)  # no staging left
    assert any("left by a stopped streaming download" in e for e in result.events)


@pytest.mark.parametrize("case", ["other-archive", "other-selection", "no-journal"])
def test_staging_that_cannot_be_reused_never_reaches_dest(big_release, release, tmp_path, case):
    give_up_half_way(big_release, tmp_path)
    journal = tmp_path / ".exp.partial" / "journal.json"
    serve_this, selection, expected = big_release, None, big_release.tree
    if case == "other-archive":  # same file name, another MD5: the staged files are removed
        serve_this, expected = release, release.tree
    elif case == "other-selection":
        selection = MemberSelection(("aux_arrays",), (0.5, 1.0))
        expected = select(big_release.tree, ("aux_arrays",), ("0.5", "1.0"))
    else:
        journal.write_text("{not json")
    with serve_release(serve_this) as (url, _):
        result = get(url, tmp_path, serve_this.md5, selection=selection)
    assert_extracted(tmp_path, expected, keep_archive=False)
    empty = [d for d, dirs, files in os.walk(tmp_path) if not dirs and not files]
    assert empty == []  # no directory of a member that was not asked for
    message = {
        "other-archive": "come from another archive",
        "other-selection": "kept",
        "no-journal": "no usable journal",
    }[case]
    assert any(message in e for e in result.events), result.events


def test_a_second_process_on_the_same_staging_is_refused(big_release, tmp_path):
    from heldout.lock import try_lock, unlock

    give_up_half_way(big_release, tmp_path)
    before = files_under(tmp_path)
    lock = str(tmp_path / ".exp.partial.lock")
    fd = try_lock(lock)  # as a live download holds it
    try:
        with serve_release(big_release) as (url, state):
            with pytest.raises(DownloadError, match="another process is extracting exp.tar.gz"):
                get(url, tmp_path, big_release.md5)
        after = files_under(tmp_path)
        assert after.pop(".exp.partial.lock") == f"{os.getpid()}\n".encode()
        assert state.log == [] and after == before
    finally:
        unlock(lock, fd)


def test_file_changed_on_the_server_mid_stream_is_an_error(release, tmp_path):
    other = bytes(reversed(release.archive))
    state = ServerState({"/exp.tar.gz": release.archive}, etag='"v1"', cuts=[1000])

    def change(number):
        if number == 1:
            state.files["/exp.tar.gz"], state.etag = other, '"v2"'

    state.on_request = change
    with serve(state) as base:
        with pytest.raises(DownloadError, match=r'changed on the server .*"v1" became "v2"'):
            get(base + "/exp.tar.gz", tmp_path, release.md5)
    assert visible_files(tmp_path) == {}  # staged members, if any, wait for the next run


def test_file_changed_on_the_server_restarts_a_kept_archive(release, tmp_path):
    new_tree = make_release_tree(tmp_path / "src2", seed=1)
    new = make_tar_gz(tmp_path / "src2", tmp_path / "new.tar.gz")
    state = ServerState({"/exp.tar.gz": release.archive}, etag='"v1"', cuts=[1000])

    def change(number):
        if number == 1:
            state.files["/exp.tar.gz"], state.etag = new, '"v2"'

    state.on_request = change
    with serve(state) as base:
        result = get(
            base + "/exp.tar.gz", tmp_path / "dest", hashlib.md5(new).hexdigest(), keep_archive=True
        )
    assert (tmp_path / "dest" / "exp.tar.gz").read_bytes() == new
    assert_extracted(tmp_path / "dest", new_tree, keep_archive=True)
    assert [r for r, _, _ in state.log] == [None, "bytes=1000-", None]
    assert any("starting over" in e for e in result.events)


def test_http_error_is_clear(release, tmp_path):
    with serve_release(release) as (url, _):
        with pytest.raises(DownloadError, match=r"missing\.tar\.gz: HTTP 404"):
            get(url.replace("exp.tar.gz", "missing.tar.gz"), tmp_path, release.md5)


# --------------------------------------------------------------------------------------------
# Wrong MD5.


def test_wrong_md5_keeps_the_archive_aside_and_extracts_nothing(release, tmp_path):
    wrong = "0" * 32
    with serve_release(release) as (url, _):
        with pytest.raises(ChecksumError, match=f"is {release.md5}, expected {wrong}") as e:
            get(url, tmp_path, wrong, keep_archive=True)
    assert e.value.kept == str(tmp_path / "exp.tar.gz.bad-md5")
    assert files_under(tmp_path) == {"exp.tar.gz.bad-md5": release.archive}
    # A second try keeps the first bad file too.
    with serve_release(release) as (url, _):
        with pytest.raises(ChecksumError):
            get(url, tmp_path, wrong, keep_archive=True)
    assert set(files_under(tmp_path)) == {"exp.tar.gz.bad-md5", "exp.tar.gz.bad-md5.1"}


def test_wrong_md5_when_streaming_keeps_the_files_aside(release, tmp_path):
    wrong = "f" * 32
    with serve_release(release) as (url, _):
        with pytest.raises(ChecksumError, match="kept aside in") as e:
            get(url, tmp_path, wrong)
    assert e.value.kept == str(tmp_path / "exp.bad-md5")
    assert sorted(os.listdir(tmp_path)) == ["exp.bad-md5"]  # nothing in place, no staging
    assert files_under(tmp_path / "exp.bad-md5") == release.tree


def test_existing_archive_with_wrong_md5_is_left_alone(release, tmp_path):
    (tmp_path / "exp.tar.gz").write_bytes(release.archive[:-1])
    with serve_release(release) as (url, state):
        with pytest.raises(ChecksumError, match="already exists with MD5"):
            get(url, tmp_path, release.md5, keep_archive=True)
    assert state.log == [] and files_under(tmp_path) == {"exp.tar.gz": release.archive[:-1]}


def test_existing_good_archive_is_not_downloaded_again(release, tmp_path):
    (tmp_path / "exp.tar.gz").write_bytes(release.archive)
    with serve_release(release) as (url, state):
        result = get(url, tmp_path, release.md5, keep_archive=True)
    assert state.log == [] and result.events == ("already downloaded",)
    assert_extracted(tmp_path, release.tree, keep_archive=True)


# --------------------------------------------------------------------------------------------
# Unsafe and corrupt archives.


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        good = tarfile.TarInfo("exp/0.5/0/checkpoints/checkpoint")
        good.size = 3
        tar.addfile(good, io.BytesIO(b"abc"))
        member.size = len(data) if member.isreg() else 0
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buffer.getvalue()


def _unsafe_members(tmp_path):
    def info(name, kind=tarfile.REGTYPE, linkname=""):
        member = tarfile.TarInfo(name)
        member.type, member.linkname = kind, linkname
        return member

    return {
        "dotdot": (info("../escape.txt"), "'..' component"),
        "dotdot-inside": (info("exp/0.5/../../../escape.txt"), "'..' component"),
        "abs": (info("/abs"), "absolute path"),
        "abs-tmp": (info(str(tmp_path / "outside" / "abs.txt")), "absolute path"),
        "symlink": (
            info("exp/0.5/0/aux_arrays.npz", tarfile.SYMTYPE, "/etc/passwd"),
            "symbolic link",
        ),
        "hardlink": (
            info("exp/0.5/0/aux_arrays.npz", tarfile.LNKTYPE, "exp/0.5/0/checkpoints/checkpoint"),
            "hard link",
        ),
        "device": (info("exp/0.5/0/aux_arrays.npz", tarfile.CHRTYPE), "device"),
        "fifo": (info("exp/0.5/0/aux_arrays.npz", tarfile.FIFOTYPE), "FIFO"),
    }


@pytest.mark.parametrize(
    "case", ["dotdot", "dotdot-inside", "abs", "abs-tmp", "symlink", "hardlink", "device", "fifo"]
)
@pytest.mark.parametrize("mode", ["stream", "local"])
def test_unsafe_members_are_refused_without_writing_outside(tmp_path, case, mode):
    member, message = _unsafe_members(tmp_path)[case]
    data = _tar_with(member, b"evil")
    dest = tmp_path / "a" / "dest"
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(data)
    before = set(files_under(tmp_path))
    with pytest.raises(ArchiveError, match=message):
        if mode == "local":
            extract_archive(archive, dest, progress=False)
        else:
            state = ServerState({"/evil.tar.gz": data})
            with serve(state) as base:
                stream_extract(
                    base + "/evil.tar.gz",
                    dest,
                    hashlib.md5(data).hexdigest(),
                    progress=False,
                    options=OPTIONS,
                )
    after = files_under(tmp_path)
    new = {name for name in set(after) - before if not name.startswith("a/dest/")}
    assert new == set()
    assert not os.path.lexists("/abs")
    assert not (tmp_path / "outside").exists() and not (tmp_path / "escape.txt").exists()
    # Streaming moves nothing into place from a refused archive; a local extraction keeps the
    # safe member read before the refused one.
    kept = {n for n in after if n.startswith("a/dest/")}
    assert kept == (set() if mode == "stream" else {"a/dest/exp/0.5/0/checkpoints/checkpoint"})


def test_unselected_links_are_skipped_not_refused(tmp_path):
    link = tarfile.TarInfo("exp/0.5/0/checkpoints/latest")
    link.type, link.linkname = tarfile.SYMTYPE, "ckpt-10.index"
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_with(link))
    summary = extract_archive(
        archive, tmp_path / "d", MemberSelection(("checkpoints",), (0.7,)), progress=False
    )
    assert summary.files == 0 and summary.skipped == 2
    assert not (tmp_path / "d" / "exp").exists()


def test_truncated_archive_never_leaves_a_truncated_file(release, tmp_path):
    cut = len(release.archive) * 2 // 3
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(release.archive[:cut])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        extract_archive(archive, tmp_path / "d", progress=False, chunk_size=4096)
    got = files_under(tmp_path / "d")
    assert 0 < len(got) < len(release.tree)
    assert all(release.tree[name] == content for name, content in got.items())  # whole or absent


def test_a_file_that_is_not_an_archive_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.tar.gz"
    path.write_bytes(b"not an archive at all" * 50)
    with pytest.raises(ArchiveError, match="notes.tar.gz: not a readable tar"):
        extract_archive(path, tmp_path / "d", progress=False)


# --------------------------------------------------------------------------------------------
# Memory.


def test_memory_stays_bounded_while_streaming_a_larger_archive(release, tmp_path):
    # ~6 MiB of incompressible checkpoint bytes; the cap is a small fraction of that.
    tree = make_release_tree(tmp_path / "src", ckpt_bytes=600_000)
    data = make_tar_gz(tmp_path / "src", tmp_path / "big.tar.gz", compresslevel=1)
    cap = 384 * 1024
    assert len(data) > 15 * cap
    options = dataclasses.replace(OPTIONS, chunk_size=16 * 1024)
    md5 = hashlib.md5(data).hexdigest()
    state = ServerState({"/big.tar.gz": data, "/exp.tar.gz": release.archive}, cuts=[None, 3 << 20])
    with serve(state) as base:
        # Warm up first: one-off imports and caches (urllib's opener, tqdm's lock) stay allocated.
        stream_extract(
            base + "/exp.tar.gz", tmp_path / "warm", release.md5, progress=False, options=options
        )
        tracemalloc.start()
        try:
            result = stream_extract(
                base + "/big.tar.gz", tmp_path / "d", md5, progress=False, options=options
            )
            _, peak_stream = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            extract_archive(
                tmp_path / "big.tar.gz", tmp_path / "e", progress=False, chunk_size=16 * 1024
            )
            _, peak_local = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.size == len(data) and [s for _, s, _ in state.log] == [200, 200, 206]
    assert files_under(tmp_path / "d") == tree and files_under(tmp_path / "e") == tree
    assert peak_stream < cap, f"streaming peak {peak_stream:,} B for a {len(data):,} B archive"
    assert peak_local < cap, f"local peak {peak_local:,} B for a {len(data):,} B archive"


def test_memory_does_not_grow_with_the_number_of_members(tmp_path):
    # tarfile's stream mode keeps every header it reads unless told otherwise.
    path = tmp_path / "many.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for i in range(3000):
            tar.addfile(tarfile.TarInfo(f"exp/0.5/{i}/checkpoints/ckpt-10.index"), io.BytesIO())
    extract_archive(path, tmp_path / "warm", MemberSelection(("aux_arrays",)), progress=False)
    tracemalloc.start()
    try:
        summary = extract_archive(
            path,
            tmp_path / "d",
            MemberSelection(("aux_arrays",)),
            progress=False,
            chunk_size=16 * 1024,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.skipped == 3000 and summary.files == 0
    assert peak < 384 * 1024, f"peak {peak:,} B for 3,000 members"


# --------------------------------------------------------------------------------------------
# Command line.


def test_cli_download_and_extract(release, tmp_path, capsys):
    with serve_release(release) as (url, _):
        status = main(
            [
                "download",
                "exp",
                "--dest",
                str(tmp_path / "d"),
                "--url",
                url,
                "--md5",
                release.md5,
                "--only",
                "aux_arrays",
                "--ratios",
                "0.7,0.5",
            ]
        )
    out = capsys.readouterr().out
    assert status == 0
    assert files_under(tmp_path / "d") == select(release.tree, ("aux_arrays",), ("0.5", "0.7"))
    assert f"MD5 {release.md5} verified" in out
    assert re.search(r"0\.5\s+3\s+3", out) and "heldout inspect" in out

    status = main(["extract", release.path, "--dest", str(tmp_path / "e"), "--ratios", "1"])
    out = capsys.readouterr().out
    assert status == 0 and files_under(tmp_path / "e") == select(release.tree, None, ("1.0",))
    assert "Extracted 12 files" in out
    # The extracted experiment opens with `heldout inspect` (heldout.cli.runs).
    assert main(["inspect", str(tmp_path / "e" / "exp")]) == 0
    assert "1.0" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["download", "cifar10", "--dest", "D"], "no released experiment 'cifar10'"),
        (["download", "exp", "--dest", "D", "--url", "http://127.0.0.1:9/x.tar.gz"], "needs --md5"),
        (
            ["download", "cifar10-inception", "--dest", "D", "--md5", "0" * 32],
            "--md5 goes with --url",
        ),
        (
            ["download", "exp", "--dest", "D", "--url", "gs://b/x.tar.gz", "--md5", "0" * 32],
            "gs:// addresses need gsutil",
        ),
        (
            ["download", "exp", "--dest", "D", "--url", "http://h/x", "--md5", "abc"],
            "32 hexadecimal digits",
        ),
        (["extract", "A", "--dest", "D", "--only", "weights"], "--only takes"),
        (["extract", "A", "--dest", "D", "--ratios", "2"], "in (0, 1]"),
        (["extract", "missing.tar.gz", "--dest", "D"], "missing.tar.gz: no such archive"),
    ],
)
def test_cli_errors_are_clear(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"heldout {argv[0]}: error: ") and message in err
    assert not (tmp_path / "D").exists()


def test_cli_reports_wrong_md5_and_empty_selection(release, tmp_path, capsys):
    with serve_release(release) as (url, _):
        status = main(
            [
                "download",
                "exp",
                "--dest",
                str(tmp_path / "d"),
                "--url",
                url,
                "--md5",
                "0" * 32,
                "--keep_archive",
            ]
        )
    err = capsys.readouterr().err
    assert status == 2 and "expected 00000000000000000000000000000000" in err
    assert "exp.tar.gz.bad-md5" in err

    status = main(["extract", release.path, "--dest", str(tmp_path / "e"), "--ratios", "0.3"])
    err = capsys.readouterr().err
    assert status == 2 and "no member of" in err and "the archive has ratios 0.5, 0.7, 1.0" in err


# --------------------------------------------------------------------------------------------
# A streaming download killed (SIGKILL) and run again.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([REPO, *filter(None, [os.environ.get("PYTHONPATH")])]),
}
STREAM_CHILD = """
import sys
from heldout.release.download import stream_extract
from heldout.release.http import HttpOptions
url, dest, md5 = sys.argv[1:4]
stream_extract(url, dest, md5, progress=False,
               options=HttpOptions(chunk_size=4096, max_retries=3, retry_wait=0.0, timeout=60.0))
"""
# Kills its own process (SIGKILL) when it is about to move file number `moves` of the verified
# staging directory into place: the rename is how `merge_tree` places a file.
KILL_WHILE_MOVING = """
import os, signal
_replace, _moved = os.replace, []
def _replace_then_die(src, dst, *args, **kwargs):
    staging = os.sep + ".exp.partial" + os.sep
    if staging in os.fspath(src) and staging not in os.fspath(dst):
        if len(_moved) == {moves}:
            os.kill(os.getpid(), signal.SIGKILL)
        _moved.append(dst)
    return _replace(src, dst, *args, **kwargs)
os.replace = _replace_then_die
"""


@pytest.fixture(scope="module")
def big_release(tmp_path_factory) -> Release:
    """~200 KiB of incompressible members: a stall half-way leaves some members extracted."""
    base = tmp_path_factory.mktemp("big_release")
    tree = make_release_tree(base / "src", ckpt_bytes=20_000, seed=2)
    data = make_tar_gz(base / "src", base / "exp.tar.gz", compresslevel=1)
    return Release(tree, data, hashlib.md5(data).hexdigest(), str(base / "exp.tar.gz"))


def visible_files(dest) -> dict[str, bytes]:
    """The files of `dest` outside hidden entries (the staging directory)."""
    return {k: v for k, v in files_under(dest).items() if not k.startswith(".")}


def staged_members(dest, tree: dict[str, bytes]) -> dict[str, str]:
    """Member name -> path, for the files of the staging directory named like a member."""
    staging = os.path.join(dest, ".exp.partial")
    found = {}
    for dirpath, _dirs, filenames in os.walk(staging):  # names only: safe while a child writes
        for filename in filenames:
            path = os.path.join(dirpath, filename)
            rel = os.path.relpath(path, staging).replace(os.sep, "/")
            for name in tree:
                if rel == name or rel.endswith("/" + name):
                    found[name] = path
    return found


def run_child(url, dest, md5, prelude=""):
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", prelude + STREAM_CHILD, url, str(dest), md5],
        env=CHILD_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_mid_stream(release: Release, dest) -> dict[str, str]:
    """Streams `release` in a child process that is SIGKILLed half-way through the archive,
    after some members were extracted; returns the staged members found then."""
    import signal
    import time

    state = ServerState({"/exp.tar.gz": release.archive}, stall_after=len(release.archive) // 2)
    with serve(state) as base:
        child = run_child(base + "/exp.tar.gz", dest, release.md5)
        try:
            assert state.stalled.wait(30), "the server never reached the stall"
            deadline = time.monotonic() + 30
            while not staged_members(dest, release.tree):
                assert child.poll() is None, child.communicate()[1].decode()
                assert time.monotonic() < deadline, "no member was extracted before the stall"
                time.sleep(0.05)
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(30) == -signal.SIGKILL
        finally:
            state.resume.set()
            if child.poll() is None:
                child.kill()
            child.communicate()
    return staged_members(dest, release.tree)  # what the kill left


@pytest.mark.parametrize("damaged", [False, True], ids=["intact", "damaged-staged-file"])
def test_killed_stream_reruns_without_rewriting_finished_members(big_release, tmp_path, damaged):
    dest = tmp_path / "dest"
    staged = kill_mid_stream(big_release, dest)
    # The kill left nothing in DEST itself, and every staged member file is whole.
    assert visible_files(dest) == {}
    for name, path in staged.items():
        with open(path, "rb") as f:
            assert f.read() == big_release.tree[name]
    # Hard links keep the staged files' inodes alive, so "same inode" means "not rewritten".
    os.makedirs(tmp_path / "witness")
    witnesses = {}
    for i, (name, path) in enumerate(sorted(staged.items())):
        witnesses[name] = str(tmp_path / "witness" / str(i))
        os.link(path, witnesses[name])
    broken = None
    if damaged:  # same size, other bytes: must be caught and written again
        broken = sorted(staged)[0]
        with open(staged[broken], "r+b") as f:
            f.write(bytes(b ^ 0xFF for b in big_release.tree[broken][:64]))

    with serve_release(big_release) as (url, state):
        result = get(url, dest, big_release.md5)
    assert_extracted(dest, big_release.tree, keep_archive=False)  # and no staging left
    assert state.log == [(None, 200, len(big_release.archive))]  # read again from byte 0
    assert result.summary.files == len(big_release.tree)
    for name, witness in witnesses.items():
        assert os.path.samefile(witness, dest / name) == (name != broken), name
    assert any("from byte 0" in e and "--keep_archive" in e for e in result.events), result.events
    kept = len(staged) - (1 if damaged else 0)
    assert any(f"kept {kept} of the members already extracted" in e for e in result.events)


@pytest.mark.parametrize("meddled", [None, "damaged", "stray"])
def test_killed_while_moving_verified_files_finishes_without_downloading(
    big_release, tmp_path, meddled
):
    dest = tmp_path / "dest"
    old = {name: b"old " + name.encode() for name in select(big_release.tree, ratios=("0.5",))}
    for name, content in old.items():
        os.makedirs(os.path.dirname(dest / name), exist_ok=True)
        (dest / name).write_bytes(content)
    with serve_release(big_release) as (url, _):
        child = run_child(url, dest, big_release.md5, KILL_WHILE_MOVING.format(moves=5))
        _, err = child.communicate(timeout=60)
    assert child.returncode == -9, err.decode()
    # Each file in DEST is the old one or the whole new one, never a partial one.
    placed = visible_files(dest)
    assert set(placed) <= set(big_release.tree)
    new = {n for n, content in placed.items() if content == big_release.tree[n]}
    assert len(new) == 5
    assert all(placed[n] == old[n] for n in set(placed) - new)
    staged = staged_members(dest, big_release.tree)
    assert len(staged) == len(big_release.tree) - 5
    if meddled == "damaged":  # same size, other bytes: the archive must be read again
        path = staged[sorted(staged)[0]]
        with open(path, "r+b") as f:
            f.write(b"\0" * 16)
    elif meddled == "stray":  # a file the journal does not vouch for never reaches DEST
        stray = os.path.join(os.path.dirname(staged[sorted(staged)[0]]), "stray.bin")
        with open(stray, "wb") as f:
            f.write(b"not from the archive")

    with serve_release(big_release) as (url, state):
        result = get(url, dest, big_release.md5)
    if meddled == "damaged":
        assert state.log == [(None, 200, len(big_release.archive))]
        assert any("differs from the journal" in e for e in result.events), result.events
    else:
        assert state.log == []  # the archive was verified before the kill: nothing to read
    assert_extracted(dest, big_release.tree, keep_archive=False)
    assert result.md5 == big_release.md5 and result.size == len(big_release.archive)
    assert result.summary.files == len(big_release.tree)
    assert result.summary.runs_by_ratio == dict.fromkeys(RATIOS, len(RUN_IDS))


def test_merge_never_replaces_an_existing_file_with_a_partial_one(tmp_path, monkeypatch):
    """Across file systems (EXDEV) a file is copied; a copy that fails leaves the old file."""
    import errno
    import shutil

    from heldout.release import tar

    staging, dest = tmp_path / "staging", tmp_path / "dest"
    (staging / "exp").mkdir(parents=True)
    (dest / "exp").mkdir(parents=True)
    (staging / "exp" / "a.bin").write_bytes(b"new" * 1000)
    (dest / "exp" / "a.bin").write_bytes(b"old")

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def copy_half(fsrc, fdst, *args):
        fdst.write(fsrc.read(100))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tar.os, "replace", cross_device)
    monkeypatch.setattr(shutil, "copyfileobj", copy_half)
    with pytest.raises(OSError, match="No space left"):
        tar.merge_tree(str(staging), str(dest))
    assert files_under(dest) == {"exp/a.bin": b"old"}  # no temporary file left either
