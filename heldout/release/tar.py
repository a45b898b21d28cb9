"""Safe streaming extraction of tar / tar.gz release archives.

An archive is read once, front to back, as a stream: `extract_stream` takes any raw byte
stream (a local file, or `heldout.release.http.HttpStream` while it downloads), so memory does not
grow with the archive's size, and writes only the members selected
(`heldout.release.archives.MemberSelection`); `extract_archive` does so for a local archive.

Extraction refuses the members `tarfile`'s ``data`` filter refuses (absolute paths, ``..``
components, links, devices and other special files) with `ArchiveError`, before anything
is written; files are written to a hidden temporary name and renamed when complete, so an
interrupted run never leaves a truncated ``aux_arrays.npz`` that looks valid. `merge_tree`
moves the files of a staging directory into place (once the archive is verified).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable

from tqdm import tqdm

from heldout.atomic import atomic_write, fsync_directory
from heldout.errors import ArchiveError
from heldout.release.archives import MemberSelection, RunMember, parse_member
from heldout.release.progress import byte_bar, human_bytes

_GZIP_MAGIC = b"\x1f\x8b"


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
            f"Extracted {self.files:,} files ({human_bytes(self.bytes)}) into {self.dest}"
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
    Its MD5 is not checked here (`heldout.release.download.download_file` does that).

    Args:
      path: the archive.
      dest: destination directory (created if needed); members keep their archive paths.
      selection: which members to extract; None for all.
      progress: show a tqdm progress bar (bytes, rate, ETA) on stderr.
      chunk_size: bytes per read.

    Raises:
      FileNotFoundError: no such archive.
      ArchiveError: not a tar / tar.gz, truncated or corrupt, or a member that is refused
        (the files extracted before it stay, all inside `dest`).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such archive")
    dest = os.path.abspath(os.fspath(dest))
    os.makedirs(dest, exist_ok=True)
    selection = selection or MemberSelection()
    with (
        open(path, "rb", buffering=0) as f,
        byte_bar(os.path.getsize(path), os.path.basename(path), progress) as bar,
    ):
        tally = extract_stream(
            _ProgressReader(f, bar), dest, selection, source=path, chunk_size=chunk_size, bar=bar
        )
    return tally.summary(dest, selection)


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
    reused: int = 0
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


def summarize(
    dest: str,
    selection: MemberSelection,
    sizes: dict[str, int],
    ratios_seen: Iterable[str],
    skipped: int,
) -> ExtractSummary:
    """The `ExtractSummary` of an extraction recorded elsewhere (a streaming journal).

    Args:
      dest: the destination directory.
      selection: the selection the members were extracted with.
      sizes: member name (archive path, ``/``-separated) -> size in bytes, per file written.
      ratios_seen: every subset-ratio directory name seen in the archive.
      skipped: file members not selected.
    """
    tally = _Tally(skipped=skipped, ratios_seen=set(ratios_seen))
    for name, size in sizes.items():
        tally.add(parse_member(tuple(name.split("/"))), size)
    return tally.summary(dest, selection)


#: Called after each member is in place: (name, size in bytes, SHA-256 hex, reused).
MemberCallback = Callable[[str, int, str, bool], None]


def extract_stream(
    raw: io.RawIOBase,
    root: str,
    selection: MemberSelection,
    *,
    source: str,
    chunk_size: int,
    bar: tqdm | None = None,
    reuse: bool = False,
    on_member: MemberCallback | None = None,
) -> _Tally:
    """Reads a tar or tar.gz stream front to back, writing the selected members under `root`.

    Reads `raw` to its end (so an MD5 of it covers every byte) and checks the gzip CRC.

    Args:
      raw: the archive's bytes, e.g. a local file or a `heldout.release.http.HttpStream`.
      root: absolute destination directory; members keep their archive paths under it.
      selection: which members to write.
      source: the archive's path or address, for error messages.
      chunk_size: read buffer size in bytes.
      bar: a progress bar to show the number of files written on, if any.
      reuse: a member whose target already exists with the member's size is compared byte for
        byte with the stream instead of written; the file is kept if equal and written again
        (atomically) from the first differing byte on otherwise. For files that an earlier,
        interrupted extraction wrote (`heldout.release.download.stream_extract`).
      on_member: called as ``on_member(name, size, sha256, reused)`` once each selected
        member is in place (``name`` is its archive path, ``/``-separated).

    Returns:
      The counts so far; ``.summary(root, selection)`` gives the `ExtractSummary`.

    Raises:
      ArchiveError: not a tar / tar.gz, truncated or corrupt, or a member that is refused
        (the files written before it stay, all inside `root`).
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
                raise ArchiveError(
                    f"{source}: member {member.name!r} is a {_member_type(member)}; links and "
                    "special files are refused (tarfile 'data' filter rules)"
                )
            target = os.path.join(root, *parts)
            src = tar.extractfile(member)
            reused = False
            if reuse and _same_size(target, member.size):
                digest, reused = _confirm_member(src, target, member, source, piece)
            else:
                digest = _write_member(src, target, member, source, piece)
            tally.add(run, member.size)
            tally.reused += reused
            if on_member is not None:
                on_member("/".join(parts), member.size, digest, reused)
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
    """The member's path components, or ArchiveError for absolute paths and ``..``."""
    name = member.name
    if "\x00" in name:
        raise ArchiveError(f"{source}: member {name!r} has a NUL byte in its name; refused")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[/\\]", name):
        raise ArchiveError(
            f"{source}: member {name!r} has an absolute path; refused, nothing was written "
            f"outside {root}"
        )
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ArchiveError(
            f"{source}: member {name!r} has a '..' component; refused, nothing was written "
            f"outside {root}"
        )
    target = os.path.normpath(os.path.join(root, *parts)) if parts else root
    if os.path.commonpath([root, target]) != root:  # cannot happen after the checks above
        raise ArchiveError(f"{source}: member {name!r} would land outside {root}; refused")
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


def _write_member(
    src, target: str, member: tarfile.TarInfo, source: str, chunk_size: int, head=None
) -> str:
    """Copies a member to `target` atomically (`heldout.atomic`), keeping its mtime; returns
    its SHA-256 (hex). `head`, when given, is a (file, n) whose first n bytes come first
    (the part of the member already read and found equal)."""
    hasher = hashlib.sha256()
    with atomic_write(target, "wb") as out:
        written = 0
        if head is not None:
            f, n = head
            f.seek(0)
            while written < n and (block := f.read(min(chunk_size, n - written))):
                out.write(block)
                hasher.update(block)
                written += len(block)
        while block := src.read(chunk_size):
            out.write(block)
            hasher.update(block)
            written += len(block)
        if written != member.size:
            raise ArchiveError(
                f"{source}: member {member.name!r} ended after {written:,} of {member.size:,} bytes"
            )
        out.flush()  # Before the mtime is set: a later write would change it.
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(out.fileno(), (member.mtime, member.mtime))
    return hasher.hexdigest()


def _same_size(path: str, size: int) -> bool:
    """Whether `path` is a regular file (not a link) of `size` bytes."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size


class _Prepend:
    """A read-once stream: `first` bytes, then what `rest.read` gives."""

    def __init__(self, first: bytes, rest):
        self._first, self._rest = first, rest

    def read(self, n: int = -1) -> bytes:
        if self._first:
            block, self._first = self._first, b""
            return block
        return self._rest.read(n)


def _confirm_member(
    src, target: str, member: tarfile.TarInfo, source: str, chunk_size: int
) -> tuple[str, bool]:
    """Compares a member with the existing `target` of the same size, byte for byte.

    Returns (SHA-256 hex, True) when they are equal (the file is left as it is); otherwise
    writes the member to `target` atomically, the equal head copied from the old file, and
    returns (SHA-256 hex, False).
    """
    hasher = hashlib.sha256()
    with open(target, "rb") as old:
        done = 0
        while block := src.read(chunk_size):
            if old.read(len(block)) != block:
                digest = _write_member(
                    _Prepend(block, src), target, member, source, chunk_size, head=(old, done)
                )
                return digest, False
            hasher.update(block)
            done += len(block)
        if done != member.size:
            raise ArchiveError(
                f"{source}: member {member.name!r} ended after {done:,} of {member.size:,} bytes"
            )
        if old.read(1):  # the file grew since its size was checked: write it again
            head = (old, done)
            return _write_member(io.BytesIO(), target, member, source, chunk_size, head), False
    return hasher.hexdigest(), True


def merge_tree(staging: str, dest: str) -> None:
    """Moves every file of `staging` (complete files: `_write_member` writes atomically) to the
    same place under `dest`, then removes `staging`.

    Each file replaces its target by one rename (`os.replace`), so an existing file is only
    ever replaced by a complete one; where a rename cannot cross file systems the file is
    copied to a temporary name beside the target and renamed (`heldout.atomic`). Each target
    directory is fsynced.
    """
    for dirpath, _dirnames, filenames in os.walk(staging):
        rel = os.path.relpath(dirpath, staging)
        target_dir = dest if rel == "." else os.path.join(dest, rel)
        os.makedirs(target_dir, exist_ok=True)
        for filename in filenames:
            src, target = os.path.join(dirpath, filename), os.path.join(target_dir, filename)
            try:
                os.replace(src, target)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                with open(src, "rb") as f, atomic_write(target, "wb") as out:
                    shutil.copyfileobj(f, out)
        fsync_directory(target_dir)
    shutil.rmtree(staging)
