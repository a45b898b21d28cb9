"""Downloading and extracting the released archives: resumable, verified, streaming, safe.

Two ways to get a release archive (see `heldout.release` for names, addresses and MD5s):

* `stream_extract` (the default of `download_release`) reads the archive over HTTP once and
  extracts only the selected members while it reads, never storing the archive. Memory stays
  bounded by a few read buffers (`HttpOptions.chunk_size`), whatever the archive's size. A
  dropped connection is resumed at the byte already read (HTTP ``Range``), feeding the same
  gzip and tar decoders, so nothing is extracted twice; a server that ignores ``Range`` is read
  again from byte 0 and the bytes already read are skipped. The MD5 of the whole stream is
  compared with the published one at the end; extracted files wait in a hidden staging
  directory (``DEST/.<archive>.partial``, `heldout.release.staging`) and are moved into place
  only when it matches.
* `download_file` saves the archive with resume (``DEST/<archive>.part``, locked by one process
  at a time, renamed when its MD5 matches) and `heldout.release.tar.extract_archive` extracts a
  local archive.

A stopped process (SIGKILL, power cut, Ctrl-C, retries given up) never leaves a partial or
unverified file in DEST: files are written under temporary names and renamed when whole, and
streamed ones stay in the staging directory until the MD5 matched. What it did is not lost:

* ``--keep_archive`` goes on from the byte reached (``<archive>.part`` and HTTP ``Range``).
* A stream is read again from byte 0 by the next run. It cannot go on mid-archive: that would
  need the gzip decompressor's state (``zlib.decompressobj`` can be neither pickled nor
  rebuilt at an offset: that needs zlib's ``inflatePrime``, which Python does not expose, and
  block boundaries, which it does not report) and the MD5's state (``hashlib`` objects cannot
  be pickled or exported), and the published MD5 must cover every byte before any file is
  trusted. The members already extracted are kept, though: the next run compares each one
  byte for byte with the stream instead of writing it again (a differing one is written
  again), and a run stopped while it moved the verified files into place is finished by the
  next one without reading the archive again.

A wrong MD5 is an error (`ChecksumError`): the bytes are kept aside (``<name>.bad-md5``), never
deleted silently and never treated as good.

This module ties the parts together: `heldout.release.http` reads over HTTP (resume, response
checks, retries: `HttpOptions`, `DownloadError`), `heldout.release.tar` writes the selected
members safely (`ArchiveError`) and `heldout.release.staging` keeps a
streamed extraction's journal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import sys
import urllib.parse

from tqdm import tqdm

from heldout.errors import ArchiveError, ChecksumError, DownloadError, InputError
from heldout.lock import try_lock, unlock
from heldout.release.archives import MemberSelection, check_md5, get_archive
from heldout.release.http import HttpOptions, HttpStream, check_url
from heldout.release.progress import byte_bar, human_bytes
from heldout.release.staging import Staging, staging_path
from heldout.release.tar import ExtractSummary, extract_archive, extract_stream, summarize


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
      experiment: a name from `heldout.release.archives.ARCHIVES`, or any name when `url` is given.
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
      ArchiveError: a corrupt archive, or a member that is refused.
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
            raise InputError(f"`url`={url} needs `md5`, the MD5 of the archive it serves{hint}")
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
        events = saved.events + _remove_staging(dest, filename)
        return DownloadResult(url, saved.md5, saved.size, saved.path, summary, events)
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

    Files are extracted into ``dest/.<name>.partial`` (`heldout.release.staging`) and moved
    into `dest` only when the MD5 of the whole stream equals `md5`, so `dest` never holds
    files from an unverified or partly read archive. What a stopped run leaves there is used
    by the next one: after a kill, a lost connection (`DownloadError`) or Ctrl-C, the archive
    is read again from byte 0 (the gzip and MD5 states of a stream cannot be saved; see
    `heldout.release.staging`) but the members already extracted are compared with it instead
    of written again; after a kill while the verified files were being moved into place, the
    move is finished without reading anything.

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
      DownloadError: as for `download_release`; the staging directory is kept for the next run
        and the message says so. Also when another live process is extracting the same
        archive into `dest` (it holds the lock ``dest/.<name>.partial.lock``, `heldout.lock`).
      ArchiveError: as for `download_release`; the staging directory is
        removed.
    """
    md5 = check_md5(md5)
    check_url(url)
    options = options or HttpOptions()
    selection = selection or MemberSelection()
    dest = os.path.abspath(os.fspath(dest))
    name = name or _archive_name(url) or "archive.tar.gz"
    os.makedirs(dest, exist_ok=True)
    staging = Staging(dest, _stem(name), url, md5, selection)
    lock = staging.path + ".lock"
    fd = try_lock(lock)
    if fd is None:
        raise DownloadError(
            f"{dest}: another process is extracting {name} into it (it holds {lock}); wait for "
            "it to finish or stop it, then run the command again"
        )
    try:
        return _stream(staging.open(), url, md5, selection, name, progress, options)
    finally:
        unlock(lock, fd)


def _stream(
    staging: Staging,
    url: str,
    md5: str,
    selection: MemberSelection,
    name: str,
    progress: bool,
    options: HttpOptions,
) -> DownloadResult:
    """`stream_extract` once the staging directory is locked and open."""
    dest = staging.dest
    events: list[str] = []

    def note(message: str) -> None:  # shown above the progress bars, kept in the result
        events.append(message)
        if progress:
            tqdm.write(f"{name}: {message}", file=sys.stderr)

    verified = staging.finish_verified(progress)
    for message in staging.notes:
        note(message)
    if verified is not None:
        sizes = {member: m.size for member, m in verified["members"].items()}
        note(
            f"the archive was verified by an earlier run, stopped while it moved the files into "
            f"place; its {len(sizes)} files are now in place, without reading the archive again"
        )
        summary = summarize(dest, selection, sizes, verified["ratios_seen"], verified["skipped"])
        return DownloadResult(url, md5, int(verified["size"]), None, summary, tuple(events))
    if staging.previous is not None:
        reached = staging.previous.get("offset") or 0
        total = staging.previous.get("total")
        note(
            f"an earlier run stopped after byte {reached:,}"
            + (f" of {total:,}" if total else "")
            + f" with {staging.staged_files()} members already extracted (in {staging.path}). "
            f"A stream cannot go on mid-archive ({_WHY_FROM_ZERO}), so the archive is read again "
            "from byte 0; those members are compared with it, not written again. "
            "--keep_archive saves the archive instead and resumes from the byte reached."
        )
    try:
        with HttpStream(url, options, desc=name, progress=progress) as raw:

            def on_member(member: str, size: int, sha256: str, reused: bool) -> None:
                staging.record(member, size, sha256, raw.pos, raw.total)

            tally = extract_stream(
                raw,
                staging.files,
                selection,
                source=url,
                chunk_size=options.chunk_size,
                bar=raw.bar,
                reuse=True,
                on_member=on_member,
            )
            got, size, stream_events = raw.md5.hexdigest(), raw.pos, raw.events
    except ArchiveError:  # the archive itself is refused: reading it again will not help
        shutil.rmtree(staging.path, ignore_errors=True)
        raise
    except DownloadError as e:
        if staging.staged_files():
            staging.save("reading")
            raise DownloadError(f"{e}; {_how_to_go_on(staging)}") from e
        shutil.rmtree(staging.path, ignore_errors=True)
        raise DownloadError(f"{e}; nothing was extracted yet: run the command again") from e
    except BaseException:  # Ctrl-C, a full disk, ...: keep what is done for the next run
        with contextlib.suppress(Exception):
            staging.save("reading")
        raise
    events.extend(stream_events)
    if staging.previous is not None:
        note(
            f"kept {tally.reused} of the members already extracted (equal to the archive's), "
            f"wrote {tally.files - tally.reused}"
        )
    if got != md5:
        kept = _aside(os.path.join(dest, f"{_stem(name)}.bad-md5"))
        staging.keep_only(set(staging.members))
        os.replace(staging.files, kept)
        shutil.rmtree(staging.path)
        raise ChecksumError(
            f"{url}: the MD5 of the {size:,} bytes read is {got}, expected {md5}; the "
            f"{tally.files} files extracted from it are kept aside in {kept}, not in {dest}",
            kept=kept,
        )
    staging.place(size, tally.ratios_seen, tally.skipped)
    return DownloadResult(url, got, size, None, tally.summary(dest, selection), tuple(events))


#: Why a killed stream is read again from byte 0 (see `heldout.release.staging`).
_WHY_FROM_ZERO = (
    "Python can save neither the gzip decompressor's state nor the MD5's, and the MD5 must "
    "cover every byte"
)


def _remove_staging(dest: str | os.PathLike, filename: str) -> tuple[str, ...]:
    """Removes what a stopped streaming download of the same archive left in `dest`: the
    archive was just extracted from a verified copy, so its unverified files are not needed."""
    path = staging_path(os.path.abspath(os.fspath(dest)), _stem(filename))
    if not os.path.isdir(path) or os.path.islink(path):
        return ()
    fd = try_lock(path + ".lock")
    if fd is None:  # a streaming download of it is running: leave it alone
        return ()
    try:
        shutil.rmtree(path)
    finally:
        unlock(path + ".lock", fd)
    return (f"removed {path}, left by a stopped streaming download of the same archive",)


def _how_to_go_on(staging: Staging) -> str:
    return (
        f"the {staging.staged_files()} members extracted so far are kept in {staging.path}: run "
        "the same command again to go on (it reads the archive again from byte 0 but does not "
        "write those members again), use `keep_archive`=True to save the archive and resume from "
        f"the byte reached, or delete {staging.path} to give up"
    )


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
      DownloadError: the server failed or misbehaved beyond repair, or the disk is too small;
        or another live process is downloading the same file (it holds the lock
        ``<path>.part.lock``, `heldout.lock`).
    """
    md5 = check_md5(md5)
    check_url(url)
    options = options or HttpOptions()
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    part = path + ".part"
    lock = part + ".lock"
    fd = try_lock(lock)  # two processes appending to one .part would spoil it
    if fd is None:
        raise DownloadError(
            f"{path}: another process is downloading it into {part} (it holds {lock}); wait "
            "for it to finish or stop it, then run the command again"
        )
    try:
        return _download_file(url, path, part, md5, progress, options)
    finally:
        unlock(lock, fd)


def _download_file(
    url: str, path: str, part: str, md5: str, progress: bool, options: HttpOptions
) -> FileDownload:
    """`download_file` once ``<path>.part`` is locked."""
    if os.path.exists(path):
        got = md5_file(path, progress=progress)
        if got == md5:
            return FileDownload(path, got, os.path.getsize(path), ("already downloaded",))
        raise ChecksumError(
            f"{path} already exists with MD5 {got}, expected {md5}; it was left as it is: "
            "move or delete it to download the archive again",
            kept=path,
        )
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

        with HttpStream(
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


def md5_file(path: str | os.PathLike, progress: bool = False) -> str:
    """The MD5 (lowercase hex) of a file, read in 1 MiB blocks."""
    hasher = hashlib.md5()
    _hash_file(os.fspath(path), hasher, progress, f"MD5 of {os.path.basename(path)}")
    return hasher.hexdigest()


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
            f"{path}: the download needs {human_bytes(needed)} more but only "
            f"{human_bytes(free)} is free there; free some space or stream without `keep_archive`"
        )


def _aside(path: str) -> str:
    """`path`, or `path.1`, `path.2`, ... whichever does not exist yet."""
    candidate, i = path, 0
    while os.path.lexists(candidate):
        i += 1
        candidate = f"{path}.{i}"
    return candidate


def _hash_file(path: str, hasher, progress: bool, desc: str) -> None:
    with open(path, "rb") as f, byte_bar(os.path.getsize(path), desc, progress) as bar:
        while block := f.read(1 << 20):
            hasher.update(block)
            bar.update(len(block))
