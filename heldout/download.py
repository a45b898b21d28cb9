"""Downloading and extracting the released archives: resumable, verified, streaming, safe.

Two ways to get a release archive (see `heldout.release` for names, addresses and MD5s):

* `stream_extract` (the default of `download_release`) reads the archive over HTTP once and
  extracts only the selected members while it reads, never storing the archive. Memory stays
  bounded by a few read buffers (`HttpOptions.chunk_size`), whatever the archive's size. A
  dropped connection is resumed at the byte already read (HTTP ``Range``), feeding the same
  gzip and tar decoders, so nothing is extracted twice; a server that ignores ``Range`` is read
  again from byte 0 and the bytes already read are skipped. The MD5 of the whole stream is
  compared with the published one at the end; extracted files wait in a hidden staging
  directory (``DEST/.<archive>.partial``) and are moved into place only when it matches.
* `download_file` saves the archive with resume (``DEST/<archive>.part``, renamed when its MD5
  matches) and `extract_archive` extracts a local archive.

Every response is checked before its bytes are used: a ``206`` must carry a ``Content-Range``
that starts at or before the requested byte (earlier bytes are skipped), a ``200`` to a ranged
request means the server ignored ``Range``, a ``416`` means the file is complete only when its
``Content-Range: bytes */N`` equals what was read, and a change of size or ``ETag`` between
requests means the file changed on the server. A connection cut mid-body (the body ends before
its ``Content-Length``) is retried with backoff, up to `HttpOptions.max_retries` attempts in a
row without progress. A wrong MD5 is an error: the bytes are kept aside (``<name>.bad-md5``),
never deleted silently and never treated as good.

Extraction refuses the members `tarfile`'s ``data`` filter refuses (absolute paths, ``..``
components, links, devices and other special files) with `UnsafeMemberError`, before anything
is written; files are written to a hidden temporary name and renamed when complete, so an
interrupted run never leaves a truncated ``aux_arrays.npz`` that looks valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import io
import os
import re
import secrets
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable

from tqdm import tqdm

from heldout import __version__
from heldout.release import (
    BASE_URL,
    GCS_URL,
    MemberSelection,
    RunMember,
    check_md5,
    get_archive,
    parse_member,
)

#: HTTP statuses worth retrying (the server or a proxy is busy or failing for now).
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_GZIP_MAGIC = b"\x1f\x8b"


class DownloadError(Exception):
    """The archive could not be fetched: HTTP error, server misbehaviour, retries exhausted."""


class ChecksumError(DownloadError):
    """The MD5 of what was read differs from the expected one.

    Attributes:
      kept: where the bytes (or, when streaming, the files extracted from them) were set aside.
    """

    def __init__(self, message: str, kept: str):
        super().__init__(message)
        self.kept = kept


class ArchiveError(ValueError):
    """The archive is not a readable tar / tar.gz, or is truncated or corrupt."""


class UnsafeMemberError(ArchiveError):
    """A member would be written outside the destination, or is a link or special file."""


@dataclasses.dataclass(frozen=True)
class HttpOptions:
    """How to talk to the server.

    Attributes:
      chunk_size: bytes per read from the connection and per copy into a file; the memory used
        by streaming extraction is a small multiple of it.
      max_retries: attempts in a row that may fail without reading a new byte before giving up.
      retry_wait: seconds before the first retry, doubled each time (at most 60 s).
      timeout: socket timeout in seconds.
    """

    chunk_size: int = 1 << 20
    max_retries: int = 5
    retry_wait: float = 2.0
    timeout: float = 60.0


@dataclasses.dataclass(frozen=True)
class ExtractSummary:
    """What an extraction wrote.

    Attributes:
      dest: the destination directory.
      experiments: experiment directories that received run files (absolute paths).
      runs_by_ratio: subset-ratio directory name -> number of runs with at least one file
        extracted, ratios sorted by value.
      aux_arrays_by_ratio: subset-ratio directory name -> number of `aux_arrays.npz` extracted.
      files: files written.
      bytes: uncompressed bytes written.
      skipped: file members not selected.
      ratios_in_archive: every subset-ratio directory name seen in the archive.
      missing_ratios: requested ratios that the archive does not have.
    """

    dest: str
    experiments: tuple[str, ...]
    runs_by_ratio: dict[str, int]
    aux_arrays_by_ratio: dict[str, int]
    files: int
    bytes: int
    skipped: int
    ratios_in_archive: tuple[str, ...]
    missing_ratios: tuple[float, ...] = ()

    def format(self) -> str:
        """A few lines for people: files written, then runs and aux arrays per ratio."""
        lines = [
            f"Extracted {self.files:,} files ({_human(self.bytes)}) into {self.dest}"
            + (f"; skipped {self.skipped:,} members not asked for." if self.skipped else ".")
        ]
        if self.runs_by_ratio:
            lines.append(f"  {'ratio':<8}{'runs':>8}{'aux_arrays':>12}")
            for ratio, runs in self.runs_by_ratio.items():
                aux = self.aux_arrays_by_ratio.get(ratio, 0)
                lines.append(f"  {ratio:<8}{runs:>8}{aux:>12}")
        for root in self.experiments:
            lines.append(f"Experiment directory: {root}  (see: heldout inspect {root})")
        if self.missing_ratios:
            have = ", ".join(self.ratios_in_archive) or "none"
            lines.append(
                "Warning: ratio(s) "
                + ", ".join(f"{r:g}" for r in self.missing_ratios)
                + f" not in the archive (it has {have})."
            )
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class FileDownload:
    """A verified downloaded file.

    Attributes:
      path: where it is.
      md5: its MD5 (lowercase hex), equal to the expected one.
      size: its size in bytes.
      events: resumes, restarts and server misbehaviour met on the way, in order.
    """

    path: str
    md5: str
    size: int
    events: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DownloadResult:
    """The outcome of `download_release` / `stream_extract`.

    Attributes:
      url: where the archive was read from.
      md5: the archive's MD5 (lowercase hex), equal to the expected one.
      size: the archive's size in bytes.
      archive: the saved archive (``--keep_archive``), or None when streamed.
      summary: what was extracted.
      events: resumes, restarts and server misbehaviour met on the way, in order.
    """

    url: str
    md5: str
    size: int
    archive: str | None
    summary: ExtractSummary
    events: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Public entry points.


def download_release(
    experiment: str,
    dest: str | os.PathLike,
    selection: MemberSelection | None = None,
    *,
    keep_archive: bool = False,
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    options: HttpOptions | None = None,
) -> DownloadResult:
    """Downloads a released experiment and extracts the selected members into `dest`.

    Members keep their archive paths, so the runs land in ``dest/<experiment>/<ratio>/<run_id>``
    (see `heldout.experiment`).

    Args:
      experiment: a name from `heldout.release.ARCHIVES`, or any name when `url` is given.
      dest: destination directory (created if needed).
      selection: which members to extract; None for all.
      keep_archive: save the archive as ``dest/<file name>`` (with resume, MD5 verified) and
        extract from it; otherwise stream (see the module docstring).
      url: another address (a mirror, a test server); then `md5` is required.
      md5: the expected MD5 (32 hex digits) of the archive at `url`.
      progress: show tqdm progress bars (bytes, rate, ETA) on stderr.
      options: HTTP settings (default `HttpOptions()`).

    Returns:
      The archive's MD5 and size and an `ExtractSummary`.

    Raises:
      ValueError: unknown experiment, `url` without `md5`, malformed MD5 or address.
      DownloadError: the server failed or misbehaved beyond repair; ChecksumError for a wrong MD5.
      ArchiveError: a corrupt archive; UnsafeMemberError for a member that is refused.
    """
    options = options or HttpOptions()
    if url is None:
        archive = get_archive(experiment)
        url, expected, filename = archive.url, md5 or archive.md5, archive.filename
    else:
        if md5 is None:
            hint = ""
            with contextlib.suppress(ValueError):
                hint = f" (the released {experiment} archive has MD5 {get_archive(experiment).md5})"
            raise ValueError(f"--url {url} needs --md5, the MD5 of the archive it serves{hint}")
        expected = md5
        filename = _archive_name(url) or f"{experiment}.tar.gz"
    expected = check_md5(expected)
    if keep_archive:
        saved = download_file(
            url,
            os.path.join(os.fspath(dest), filename),
            expected,
            progress=progress,
            options=options,
        )
        summary = extract_archive(
            saved.path, dest, selection, progress=progress, chunk_size=options.chunk_size
        )
        return DownloadResult(url, saved.md5, saved.size, saved.path, summary, saved.events)
    return stream_extract(
        url, dest, expected, selection, name=filename, progress=progress, options=options
    )


def stream_extract(
    url: str,
    dest: str | os.PathLike,
    md5: str,
    selection: MemberSelection | None = None,
    *,
    name: str | None = None,
    progress: bool = True,
    options: HttpOptions | None = None,
) -> DownloadResult:
    """Reads a tar.gz (or tar) over HTTP once and extracts the selected members on the way.

    Files are extracted into ``dest/.<name>.partial`` and moved into `dest` only when the MD5 of
    the whole stream equals `md5`; on any failure that staging directory is removed, so `dest`
    never holds files from an unverified or partly read archive.

    Args:
      url: ``http://`` or ``https://`` address of the archive.
      dest: destination directory (created if needed).
      md5: expected MD5 of the whole archive, 32 hex digits.
      selection: which members to extract; None for all.
      name: the archive's file name, for progress bars and staging names (default: from `url`).
      progress: show a tqdm progress bar (bytes, rate, ETA) on stderr.
      options: HTTP settings (default `HttpOptions()`).

    Raises:
      ChecksumError: the MD5 differs; the extracted files are kept in ``dest/<name>.bad-md5``.
      DownloadError, ArchiveError, UnsafeMemberError: as for `download_release`.
    """
    md5 = check_md5(md5)
    _check_url(url)
    options = options or HttpOptions()
    selection = selection or MemberSelection()
    dest = os.path.abspath(os.fspath(dest))
    name = name or _archive_name(url) or "archive.tar.gz"
    stem = _stem(name)
    os.makedirs(dest, exist_ok=True)
    staging = os.path.join(dest, f".{stem}.partial")
    if os.path.lexists(staging):  # left by an interrupted run: unverified, read again
        shutil.rmtree(staging)
    os.makedirs(staging)
    try:
        with _HttpStream(url, options, desc=name, progress=progress) as raw:
            tally = _extract_stream(
                raw, staging, selection, source=url, chunk_size=options.chunk_size, bar=raw.bar
            )
            got, size, events = raw.md5.hexdigest(), raw.pos, tuple(raw.events)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if got != md5:
        kept = _aside(os.path.join(dest, f"{stem}.bad-md5"))
        os.replace(staging, kept)
        raise ChecksumError(
            f"{url}: the MD5 of the {size:,} bytes read is {got}, expected {md5}; the "
            f"{tally.files} files extracted from it are kept aside in {kept}, not in {dest}",
            kept=kept,
        )
    _merge_tree(staging, dest)
    return DownloadResult(url, got, size, None, tally.summary(dest, selection), events)


def download_file(
    url: str,
    path: str | os.PathLike,
    md5: str,
    *,
    progress: bool = True,
    options: HttpOptions | None = None,
) -> FileDownload:
    """Downloads `url` to `path` with resume, and verifies its MD5.

    Bytes go to ``<path>.part``, which a later call resumes with an HTTP ``Range`` request; the
    file is renamed to `path` only when its MD5 matches. An existing `path` is checked instead
    of downloaded again.

    Args:
      url: ``http://`` or ``https://`` address.
      path: where to save the file.
      md5: expected MD5, 32 hex digits.
      progress: show tqdm progress bars (bytes, rate, ETA) on stderr.
      options: HTTP settings (default `HttpOptions()`).

    Raises:
      ChecksumError: the MD5 differs; the download is kept as ``<path>.bad-md5`` (or, for an
        existing `path`, left where it is).
      DownloadError: the server failed or misbehaved beyond repair, or the disk is too small.
    """
    md5 = check_md5(md5)
    _check_url(url)
    options = options or HttpOptions()
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        got = md5_file(path, progress=progress)
        if got == md5:
            return FileDownload(path, got, os.path.getsize(path), ("already downloaded",))
        raise ChecksumError(
            f"{path} already exists with MD5 {got}, expected {md5}; it was left as it is: "
            "move or delete it to download the archive again",
            kept=path,
        )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    part = path + ".part"
    hasher = hashlib.md5()
    start = 0
    if os.path.exists(part):
        start = os.path.getsize(part)
        _hash_file(part, hasher, progress, f"checking {os.path.basename(part)}")
    with open(part, "ab") as out:

        def restart() -> None:
            out.flush()
            out.seek(0)
            out.truncate()

        with _HttpStream(
            url,
            options,
            start=start,
            hasher=hasher,
            on_restart=restart,
            desc=os.path.basename(path),
            progress=progress,
        ) as stream:
            stream.open()
            if stream.total is not None:
                _check_space(path, stream.total - stream.pos)
            while chunk := stream.read(options.chunk_size):
                out.write(chunk)
            got, size, events = stream.md5.hexdigest(), stream.pos, tuple(stream.events)
        out.flush()
        os.fsync(out.fileno())
    if got != md5:
        kept = _aside(path + ".bad-md5")
        os.replace(part, kept)
        raise ChecksumError(
            f"{url}: the MD5 of the {size:,} bytes downloaded is {got}, expected {md5}; the "
            f"file is kept as {kept} and was not extracted",
            kept=kept,
        )
    os.replace(part, path)
    return FileDownload(path, got, size, events)


def extract_archive(
    path: str | os.PathLike,
    dest: str | os.PathLike,
    selection: MemberSelection | None = None,
    *,
    progress: bool = True,
    chunk_size: int = 1 << 20,
) -> ExtractSummary:
    """Extracts the selected members of a local tar.gz (or tar) archive into `dest`.

    The archive is read once, front to back, as a stream (memory does not grow with its size).
    Its MD5 is not checked here (`download_file` does that).

    Args:
      path: the archive.
      dest: destination directory (created if needed); members keep their archive paths.
      selection: which members to extract; None for all.
      progress: show a tqdm progress bar (bytes, rate, ETA) on stderr.
      chunk_size: bytes per read.

    Raises:
      FileNotFoundError: no such archive.
      ArchiveError: not a tar / tar.gz, truncated or corrupt; UnsafeMemberError for a member
        that is refused (the files extracted before it stay, all inside `dest`).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such archive")
    dest = os.path.abspath(os.fspath(dest))
    os.makedirs(dest, exist_ok=True)
    selection = selection or MemberSelection()
    with (
        open(path, "rb", buffering=0) as f,
        _bar(os.path.getsize(path), os.path.basename(path), progress) as bar,
    ):
        tally = _extract_stream(
            _ProgressReader(f, bar), dest, selection, source=path, chunk_size=chunk_size, bar=bar
        )
    return tally.summary(dest, selection)


def md5_file(path: str | os.PathLike, progress: bool = False) -> str:
    """The MD5 (lowercase hex) of a file, read in 1 MiB blocks."""
    hasher = hashlib.md5()
    _hash_file(os.fspath(path), hasher, progress, f"MD5 of {os.path.basename(path)}")
    return hasher.hexdigest()


# --------------------------------------------------------------------------------------------
# HTTP.


class _HttpStream(io.RawIOBase):
    """A read-once byte stream of an HTTP resource that survives dropped connections.

    `pos` counts the bytes delivered (the archive offset); `md5` hashes exactly those bytes, each
    once. A lost connection is resumed with ``Range: bytes=<pos>-``; the response is checked
    (see the module docstring) and bytes before `pos` are skipped. `on_restart`, when given,
    lets the caller drop what it has (a partial file) when the remote file changed, and the
    stream starts over from byte 0; without it, a change is an error.
    """

    def __init__(
        self,
        url: str,
        options: HttpOptions,
        *,
        start: int = 0,
        hasher=None,
        on_restart: Callable[[], None] | None = None,
        desc: str = "",
        progress: bool = True,
    ):
        super().__init__()
        self.url = url
        self.options = options
        self.pos = start
        self.md5 = hasher if hasher is not None else hashlib.md5()
        self.total: int | None = None
        self.events: list[str] = []
        self.bar = _bar(None, desc, progress, initial=start)
        self._on_restart = on_restart
        self._use_range = True
        self._resp: http.client.HTTPResponse | None = None
        self._resp_end: int | None = None
        self._complete = False
        self._etag: str | None = None
        self._failures = 0
        self._pos_at_failure = start

    # io.RawIOBase interface.
    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        self._close_response()
        self.bar.close()
        super().close()

    def open(self) -> None:
        """Makes the first request now (to learn the size) instead of on the first read."""
        while self._resp is None and not self._complete:
            self._connect()

    # Reading.
    def _read(self, n: int) -> bytes:
        while True:
            if self._complete:
                return b""
            if self._resp is None:
                self._connect()
                continue
            try:
                data = self._resp.read(min(n, self.options.chunk_size))
            except (OSError, http.client.HTTPException) as e:
                self._fail(f"connection lost at byte {self.pos:,} ({type(e).__name__}: {e})")
                continue
            if data:
                self.pos += len(data)
                self.md5.update(data)
                self.bar.update(len(data))
                return data
            if self._resp_end is not None and self.pos < self._resp_end:
                self._fail(
                    f"connection closed at byte {self.pos:,} of {self._resp_end:,}; resuming"
                )
                continue
            self._close_response()
            self._complete = True
            if self.total is None:
                self.total = self.pos
            return b""

    def _connect(self) -> None:
        ranged = self.pos > 0 and self._use_range
        headers = {"User-Agent": f"heldout/{__version__}", "Accept-Encoding": "identity"}
        if ranged:
            headers["Range"] = f"bytes={self.pos}-"
        try:
            resp = urllib.request.urlopen(
                urllib.request.Request(self.url, headers=headers), timeout=self.options.timeout
            )
        except urllib.error.HTTPError as e:
            status, reason, response_headers = e.code, e.reason, e.headers
            e.close()
            if status == 416 and ranged:
                self._unsatisfiable(response_headers)
            elif status in RETRYABLE_STATUS:
                self._fail(f"HTTP {status} {reason} at byte {self.pos:,}")
            else:
                raise DownloadError(f"{self.url}: HTTP {status} {reason}") from None
            return
        except (OSError, http.client.HTTPException) as e:
            self._fail(f"request failed at byte {self.pos:,} ({type(e).__name__}: {e})")
            return

        status, headers_in = resp.status, resp.headers
        length = _int_header(headers_in.get("Content-Length"))
        if status == 206:
            content_range = headers_in.get("Content-Range")
            match = _CONTENT_RANGE.match(content_range or "")
            if not match:
                self._reject(resp, f"HTTP 206 with Content-Range {content_range!r}")
                return
            start, last = int(match.group(1)), int(match.group(2))
            total = None if match.group(3) == "*" else int(match.group(3))
            end = last + 1
            if (
                last < start
                or (total is not None and end > total)
                or (length is not None and length != end - start)
            ):
                self._reject(
                    resp, f"HTTP 206 with Content-Range {content_range!r}, Content-Length {length}"
                )
                return
        elif status == 200:
            start, total, end = 0, length, length
            if ranged:
                self._event(
                    f"server ignored Range (HTTP 200 for bytes={self.pos}-): reading from "
                    f"byte 0 again and skipping the {self.pos:,} bytes already read"
                )
        else:
            resp.close()
            raise DownloadError(f"{self.url}: unexpected HTTP {status} {resp.reason}")

        if not self._same_file(resp, headers_in.get("ETag"), total):
            return
        if start > self.pos:
            self._reject(
                resp, f"HTTP 206 starting at byte {start:,} when bytes={self.pos}- was asked"
            )
            return
        if start < self.pos and status == 206:
            self._event(
                f"HTTP 206 starting at byte {start:,} when bytes={self.pos}- was asked: "
                f"skipping {self.pos - start:,} bytes"
            )
        if self.total is not None and self.pos == self.total:
            resp.close()
            self._complete = True
            self._event(f"server reports {self.total:,} bytes: all already read")
            return
        skip = self.pos - start
        while skip:
            try:
                data = resp.read(min(skip, self.options.chunk_size))
            except (OSError, http.client.HTTPException) as e:
                data, reason = b"", f"{type(e).__name__}: {e}"
            else:
                reason = "connection closed"
            if not data:
                resp.close()
                self._fail(f"{reason} while skipping to byte {self.pos:,}")
                return
            skip -= len(data)
        self._resp, self._resp_end = resp, end

    def _same_file(self, resp, etag: str | None, total: int | None) -> bool:
        """Checks a response describes the file read so far; records its size and ETag."""
        changes = []
        if self._etag is not None and etag is not None and etag != self._etag:
            changes.append(f"ETag {self._etag} became {etag}")
        if self.total is not None and total is not None and total != self.total:
            changes.append(f"size {self.total:,} became {total:,} bytes")
        if total is not None and total < self.pos:
            changes.append(f"it has {total:,} bytes, fewer than the {self.pos:,} already read")
        if changes:
            resp.close()
            self._changed("; ".join(changes))
            return False
        if etag is not None:
            self._etag = etag
        if total is not None and self.total is None:
            self.total = total
            self.bar.total = total
            self.bar.refresh()
        return True

    def _unsatisfiable(self, headers) -> None:
        """HTTP 416 to ``Range: bytes=<pos>-``: complete when the server's size equals `pos`."""
        match = _UNSATISFIED_RANGE.match(headers.get("Content-Range") or "")
        total = int(match.group(1)) if match else self.total
        if total is not None and total == self.pos:
            self.total = total
            self.bar.total = total
            self.bar.refresh()
            self._complete = True
            self._event(f"HTTP 416: the server has {total:,} bytes, all already read")
        elif total is not None and total < self.pos:
            self._changed(f"HTTP 416: it has {total:,} bytes, fewer than the {self.pos:,} read")
        else:
            self._reject(None, f"HTTP 416 for bytes={self.pos}- without a usable size")

    def _reject(self, resp, reason: str) -> None:
        """A response that cannot be trusted: stop using ``Range`` and try again."""
        if resp is not None:
            resp.close()
        self._use_range = False
        self._fail(f"{reason}; asking for the whole file instead and skipping what was read")

    def _changed(self, reason: str) -> None:
        if self._on_restart is None:
            raise DownloadError(
                f"{self.url}: the file changed on the server during the download ({reason}); "
                "nothing was kept; run the command again"
            )
        self._on_restart()
        self.pos = 0
        self.md5 = hashlib.md5()
        self.total = None
        self._etag = None
        self.bar.reset(total=None)
        self._fail(f"the remote file changed ({reason}): starting over from byte 0")

    def _fail(self, reason: str) -> None:
        """Records a failed attempt; gives up after too many in a row, else waits."""
        self._close_response()
        if self.pos > self._pos_at_failure:
            self._failures = 0
        self._pos_at_failure = self.pos
        self._failures += 1
        if self._failures > self.options.max_retries:
            self.events.append(reason)
            of = f" of {self.total:,}" if self.total is not None else ""
            raise DownloadError(
                f"{self.url}: giving up after {self._failures} attempts in a row without "
                f"progress at byte {self.pos:,}{of}: {reason}"
            )
        wait = min(self.options.retry_wait * 2 ** (self._failures - 1), 60.0)
        retry = f"retry {self._failures} of {self.options.max_retries} in {wait:g} s"
        self._event(f"{reason} ({retry})")
        if wait > 0:
            time.sleep(wait)

    def _event(self, message: str) -> None:
        """Records a resume, restart or misbehaviour; shown above the progress bar."""
        self.events.append(message)
        if not self.bar.disable:
            self.bar.write(f"{self.bar.desc or self.url}: {message}", file=sys.stderr)

    def _close_response(self) -> None:
        if self._resp is not None:
            with contextlib.suppress(Exception):
                self._resp.close()
            self._resp = None
            self._resp_end = None


def _int_header(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _check_url(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if url.startswith(GCS_URL) or scheme == "gs":
        raise ValueError(
            f"{url}: gs:// addresses need gsutil; use the HTTP address instead ({BASE_URL}<file>)"
        )
    if scheme not in ("http", "https"):
        raise ValueError(f"{url}: not an http:// or https:// address")


def _archive_name(url: str) -> str:
    return os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))


def _stem(name: str) -> str:
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _check_space(path: str, needed: int) -> None:
    free = shutil.disk_usage(os.path.dirname(path)).free
    if needed > free:
        raise DownloadError(
            f"{path}: the download needs {_human(needed)} more but only {_human(free)} is free "
            "there; free some space or stream without --keep_archive"
        )


# --------------------------------------------------------------------------------------------
# Extraction.


class _ProgressReader(io.RawIOBase):
    """A raw file that advances a progress bar by the bytes read."""

    def __init__(self, f, bar: tqdm):
        super().__init__()
        self._f, self._bar = f, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._f.readinto(buffer)
        self._bar.update(n or 0)
        return n


@dataclasses.dataclass
class _Tally:
    """Counts of an extraction in progress."""

    files: int = 0
    bytes: int = 0
    skipped: int = 0
    runs: dict[str, set[tuple[str, int]]] = dataclasses.field(default_factory=dict)
    aux: dict[str, int] = dataclasses.field(default_factory=dict)
    experiments: set[str] = dataclasses.field(default_factory=set)
    ratios_seen: set[str] = dataclasses.field(default_factory=set)

    def add(self, run: RunMember | None, size: int) -> None:
        self.files += 1
        self.bytes += size
        if run is not None:
            self.runs.setdefault(run.ratio, set()).add((run.experiment, run.run_id))
            self.experiments.add(run.experiment)
            if run.kind == "aux_arrays":
                self.aux[run.ratio] = self.aux.get(run.ratio, 0) + 1

    def summary(self, dest: str, selection: MemberSelection) -> ExtractSummary:
        ratios = sorted(self.runs, key=float)
        return ExtractSummary(
            dest=dest,
            experiments=tuple(
                os.path.join(dest, *e.split("/")) if e else dest for e in sorted(self.experiments)
            ),
            runs_by_ratio={r: len(self.runs[r]) for r in ratios},
            aux_arrays_by_ratio={r: self.aux.get(r, 0) for r in ratios},
            files=self.files,
            bytes=self.bytes,
            skipped=self.skipped,
            ratios_in_archive=tuple(sorted(self.ratios_seen, key=float)),
            missing_ratios=selection.missing_ratios(self.ratios_seen),
        )


def _extract_stream(
    raw: io.RawIOBase,
    root: str,
    selection: MemberSelection,
    *,
    source: str,
    chunk_size: int,
    bar: tqdm | None = None,
) -> _Tally:
    """Reads a tar or tar.gz stream front to back, writing the selected members under `root`.

    Reads `raw` to its end (so an MD5 of it covers every byte) and checks the gzip CRC.
    """
    tally = _Tally()
    buffered = io.BufferedReader(raw, buffer_size=chunk_size)
    # Decompressed data moves in pieces of at most 64 KiB: larger ones do not read faster.
    piece = max(min(chunk_size, 1 << 16), tarfile.RECORDSIZE)
    try:
        is_gzip = buffered.peek(2)[:2] == _GZIP_MAGIC
        layer = gzip.GzipFile(fileobj=buffered, mode="rb") if is_gzip else buffered
        tar = tarfile.open(fileobj=layer, mode="r|", bufsize=piece)
        while (member := tar.next()) is not None:
            tar.members.clear()  # stream mode otherwise keeps every header in memory
            parts = _member_parts(member, source, root)
            if not parts:
                continue
            run = parse_member(parts)
            if run is not None:
                tally.ratios_seen.add(run.ratio)
            if member.isdir():
                continue
            if not selection.wants(run):
                tally.skipped += 1
                continue
            if not member.isreg():
                raise UnsafeMemberError(
                    f"{source}: member {member.name!r} is a {_member_type(member)}; links and "
                    "special files are refused (tarfile 'data' filter rules)"
                )
            target = os.path.join(root, *parts)
            _write_member(tar.extractfile(member), target, member, source, piece)
            tally.add(run, member.size)
            if bar is not None:
                bar.set_postfix_str(f"{tally.files:,} files", refresh=False)
        # Read to the end: tar padding, the gzip trailer (CRC-32 and size are checked there).
        while layer.read(piece):
            pass
        while buffered.read(chunk_size):
            pass
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ArchiveError(
            f"{source}: not a readable tar / tar.gz archive, or truncated or corrupt after "
            f"{tally.files} extracted files ({type(e).__name__}: {e})"
        ) from e
    return tally


def _member_parts(member: tarfile.TarInfo, source: str, root: str) -> tuple[str, ...]:
    """The member's path components, or UnsafeMemberError for absolute paths and ``..``."""
    name = member.name
    if "\x00" in name:
        raise UnsafeMemberError(f"{source}: member {name!r} has a NUL byte in its name; refused")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[/\\]", name):
        raise UnsafeMemberError(
            f"{source}: member {name!r} has an absolute path; refused, nothing was written "
            f"outside {root}"
        )
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeMemberError(
            f"{source}: member {name!r} has a '..' component; refused, nothing was written "
            f"outside {root}"
        )
    target = os.path.normpath(os.path.join(root, *parts)) if parts else root
    if os.path.commonpath([root, target]) != root:  # cannot happen after the checks above
        raise UnsafeMemberError(f"{source}: member {name!r} would land outside {root}; refused")
    return parts


def _member_type(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"hard link to {member.linkname!r}"
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "FIFO"
    return f"special member (type {member.type!r})"


def _write_member(src, target: str, member: tarfile.TarInfo, source: str, chunk_size: int) -> None:
    """Copies a member to a hidden temporary file beside `target`, then renames it."""
    directory, base = os.path.split(target)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        written = 0
        with os.fdopen(fd, "wb") as out:
            while block := src.read(chunk_size):
                out.write(block)
                written += len(block)
        if written != member.size:
            raise ArchiveError(
                f"{source}: member {member.name!r} ended after {written:,} of {member.size:,} bytes"
            )
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(tmp, (member.mtime, member.mtime))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _merge_tree(staging: str, dest: str) -> None:
    """Moves every file of `staging` to the same place under `dest`, then removes `staging`."""
    for dirpath, _dirnames, filenames in os.walk(staging):
        rel = os.path.relpath(dirpath, staging)
        target_dir = dest if rel == "." else os.path.join(dest, rel)
        os.makedirs(target_dir, exist_ok=True)
        for filename in filenames:
            os.replace(os.path.join(dirpath, filename), os.path.join(target_dir, filename))
    shutil.rmtree(staging)


def _aside(path: str) -> str:
    """`path`, or `path.1`, `path.2`, ... whichever does not exist yet."""
    candidate, i = path, 0
    while os.path.lexists(candidate):
        i += 1
        candidate = f"{path}.{i}"
    return candidate


def _hash_file(path: str, hasher, progress: bool, desc: str) -> None:
    with open(path, "rb") as f, _bar(os.path.getsize(path), desc, progress) as bar:
        while block := f.read(1 << 20):
            hasher.update(block)
            bar.update(len(block))


def _bar(total: int | None, desc: str, progress: bool, initial: int = 0) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
        mininterval=0.5,
        delay=0.5,  # shown once the size is known
        dynamic_ncols=True,
    )


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
