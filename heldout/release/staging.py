"""The staging directory of a streaming download, and its journal: what survives a killed run.

`heldout.release.download.stream_extract` extracts into ``DEST/.<archive>.partial/`` and moves
the files into place only once the MD5 of the whole archive matches. The directory holds::

    files/          the members extracted so far, under their archive paths; each one written
                    atomically (`heldout.atomic`), so it is whole or absent, never truncated
    journal.json    what the files are (written atomically, `heldout.atomic`)

The journal (JSON) names the archive (``md5``, ``url``, the selection) and records, per
member extracted, its ``size`` and ``sha256``, plus the compressed ``offset`` reached; its
``state`` is ``"reading"`` while the archive is read and ``"verified"`` once the archive's MD5
matched, from just before the files are moved into place until the staging directory is
removed. So after a process is killed (SIGKILL, power cut):

* in state ``"reading"``, the next run reads the archive again from byte 0 (a stream cannot go
  on mid-archive: neither the gzip decompressor's state, ``zlib.decompressobj``, nor the MD5's,
  ``hashlib.md5``, can be saved, and every byte must pass through the MD5 before any file is
  trusted) and compares each member with the file already extracted instead of writing it
  again (`heldout.release.tar.extract_stream` with ``reuse=True``);
* in state ``"verified"``, the next run checks the files left (size and SHA-256 against the
  journal) and finishes moving them, reading nothing from the server.

Files of another archive (another MD5), or a directory without a readable journal, are removed.
One process at a time works on a staging directory: `stream_extract` holds the lock
``DEST/.<archive>.partial.lock`` (`heldout.lock`; the kernel drops it when the process dies).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import stat
import time

from heldout.atomic import write_text_atomic
from heldout.release.archives import MemberSelection
from heldout.release.progress import byte_bar
from heldout.release.tar import merge_tree

_FORMAT = "heldout-stream-staging"
_VERSION = 1
#: Temporary names of `heldout.atomic` (``.<name>.<12 hex>.tmp``): files a kill cut short.
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def staging_path(dest: str, stem: str) -> str:
    """``dest/.<stem>.partial``: where a streamed extraction of archive `stem` is staged."""
    return os.path.join(dest, f".{stem}.partial")


@dataclasses.dataclass(frozen=True)
class Member:
    """A member extracted into the staging directory.

    Attributes:
      size: bytes.
      sha256: SHA-256 of its content, lowercase hex.
    """

    size: int
    sha256: str


class Staging:
    """``DEST/.<stem>.partial``: extracted files waiting for the archive's MD5, and a journal.

    Attributes:
      path: the staging directory.
      files: ``path/files``, where members are extracted.
      previous: the journal an earlier, interrupted run left (a dict), or None.
      notes: what was found and cleaned on opening, for people.
    """

    def __init__(self, dest: str, stem: str, url: str, md5: str, selection: MemberSelection):
        self.dest = dest
        self.path = staging_path(dest, stem)
        self.files = os.path.join(self.path, "files")
        self.journal_path = os.path.join(self.path, "journal.json")
        self.url, self.md5, self.selection = url, md5, selection
        self.members: dict[str, Member] = {}
        self.offset = 0
        self.total: int | None = None
        self.previous: dict | None = None
        self.notes: list[str] = []
        self._saved_at = 0.0
        self._interval = 2.0

    # Opening.
    def open(self) -> Staging:
        """Creates the directory, or takes over the one an interrupted run left (see the module
        docstring); removes temporary files cut short by a kill. Writes the journal."""
        if os.path.lexists(self.path):
            self.previous = self._load_previous()
            if self.previous is None:
                _remove(self.path)
        if self.previous is not None:
            removed = _remove_temporaries(self.files)
            if removed:
                self.notes.append(f"removed {removed} partly written file(s) of the earlier run")
        os.makedirs(self.files, exist_ok=True)
        if self.previous is None or self.previous["state"] != "verified":
            self.save("reading")
        return self

    def _load_previous(self) -> dict | None:
        try:
            with open(self.journal_path, encoding="utf-8") as f:
                journal = json.load(f)
            if not (
                isinstance(journal, dict)
                and journal.get("format") == _FORMAT
                and journal.get("version") == _VERSION
                and journal.get("state") in ("reading", "verified")
                and isinstance(journal.get("members"), dict)
            ):
                raise ValueError("not a staging journal of this version")
            if journal["state"] == "verified":  # what the result needs besides the members
                journal["size"], journal["skipped"] = int(journal["size"]), int(journal["skipped"])
                journal["ratios_seen"] = [str(r) for r in journal["ratios_seen"]]
            members = {
                _member_name(name): Member(int(m["size"]), str(m["sha256"]))
                for name, m in journal["members"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.notes.append(
                f"removed {self.path}: no usable journal ({type(e).__name__}: {e}), so its files "
                "cannot be trusted"
            )
            return None
        if journal.get("md5") != self.md5:
            self.notes.append(
                f"removed {self.path}: its files come from another archive (MD5 "
                f"{journal.get('md5')}, this one is {self.md5})"
            )
            return None
        journal["members"] = members
        return journal

    def staged_files(self) -> int:
        """The number of files in `files`."""
        return sum(len(names) for _, _, names in os.walk(self.files))

    # Recording.
    def record(self, name: str, size: int, sha256: str, offset: int, total: int | None) -> None:
        """Notes a member now complete in `files`; saves the journal every few seconds."""
        self.members[name] = Member(size, sha256)
        self.offset, self.total = offset, total
        if time.monotonic() - self._saved_at >= self._interval:
            self.save("reading")

    def save(self, state: str, **extra) -> None:
        """Writes the journal atomically. Saving takes at most ~5% of the time: the interval
        between periodic saves grows with the time one save takes (a large journal)."""
        started = time.monotonic()
        journal = {
            "format": _FORMAT,
            "version": _VERSION,
            "state": state,
            "md5": self.md5,
            "url": self.url,
            "selection": _selection_json(self.selection),
            "offset": self.offset,
            "total": self.total,
            **extra,
            "members": {n: dataclasses.asdict(m) for n, m in sorted(self.members.items())},
        }
        write_text_atomic(self.journal_path, json.dumps(journal, indent=0) + "\n")
        self._saved_at = time.monotonic()
        self._interval = max(2.0, 20 * (self._saved_at - started))

    # Finishing.
    def keep_only(self, names: set[str]) -> None:
        """Removes every file of `files` that is not one of `names` (and empty directories)."""
        for dirpath, _dirnames, filenames in os.walk(self.files, topdown=False):
            for filename in filenames:
                path = os.path.join(dirpath, filename)
                if os.path.relpath(path, self.files).replace(os.sep, "/") not in names:
                    os.remove(path)
            if dirpath != self.files and not os.listdir(dirpath):
                os.rmdir(dirpath)

    def place(self, size: int, ratios_seen, skipped: int) -> None:
        """The archive's MD5 matched: records that (state ``"verified"``), moves the files into
        DEST (`heldout.release.tar.merge_tree`) and removes the staging directory."""
        self.keep_only(set(self.members))
        self.save("verified", size=size, ratios_seen=sorted(ratios_seen), skipped=skipped)
        self._move_and_remove()

    def _move_and_remove(self) -> None:
        merge_tree(self.files, self.dest)
        shutil.rmtree(self.path)

    def finish_verified(self, progress: bool) -> dict | None:
        """Finishes moving the files of a run killed after its archive was verified.

        Every file still staged must have its journal size and SHA-256; every other one must
        be in DEST with its size (it was moved there by one rename). Returns the journal when
        done, or None (nothing moved, the journal back in state ``"reading"``) when there is
        no such run, the selection differs or a check fails; then the archive must be read
        again.
        """
        journal = self.previous
        if journal is None or journal["state"] != "verified":
            return None
        problem = self._check_verified(journal, progress)
        if problem is not None:
            self.notes.append(f"{problem}: reading the archive again")
            self.save("reading")
            return None
        self.members = journal["members"]
        self.keep_only(set(self.members))  # nothing the journal does not vouch for moves
        self._move_and_remove()
        return journal

    def _check_verified(self, journal: dict, progress: bool) -> str | None:
        """Why the files of a verified run cannot be placed as they are, or None."""
        if journal.get("selection") != _selection_json(self.selection):
            return "the earlier run extracted another selection"
        members: dict[str, Member] = journal["members"]
        staged = {}
        for name, member in members.items():
            path = os.path.join(self.files, *name.split("/"))
            if _regular_size(path) is not None:
                staged[path] = (name, member)
            elif _regular_size(os.path.join(self.dest, *name.split("/"))) != member.size:
                return f"{name} is neither staged nor in place"
        total = sum(m.size for _, m in staged.values())
        with byte_bar(total, "checking staged files", progress) as bar:
            for path, (name, member) in staged.items():
                if _sha256(path, bar) != (member.sha256, member.size):
                    return f"the staged {name} differs from the journal"
        return None


def _member_name(name: str) -> str:
    """`name` when it is a relative ``/``-separated path without ``.``/``..``, else ValueError."""
    parts = name.split("/")
    if "\x00" in name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"member name {name!r} is not a plain relative path")
    return name


def _selection_json(selection: MemberSelection) -> dict:
    return {
        "only": sorted(selection.only) if selection.only else None,
        "ratios": sorted(selection.ratios) if selection.ratios else None,
    }


def _regular_size(path: str) -> int | None:
    """The size of `path` when it is a regular file (not a link), else None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def _remove_temporaries(root: str) -> int:
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for filename in filenames:
            if _TEMPORARY.match(filename):
                os.remove(os.path.join(dirpath, filename))
                removed += 1
    return removed


def _sha256(path: str, bar) -> tuple[str, int]:
    hasher, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
            size += len(block)
            bar.update(len(block))
    return hasher.hexdigest(), size
