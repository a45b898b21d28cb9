"""The released archives of heldout training experiments, and which of their members to take.

Feldman & Zhang (2020) and Jiang et al. (2021) released the trained runs as three public tar.gz
archives (facts from issue 6 of this project, which quotes the release page)::

    http://storage.googleapis.com/gresearch/heldout-training-checkpoints/<file>
    gs://gresearch/heldout-training-checkpoints/<file>

Inside, members follow the experiment layout of `heldout.experiment`::

    <experiment>/<subset_ratio>/<run_id>/aux_arrays.npz
    <experiment>/<subset_ratio>/<run_id>/checkpoints/ckpt-<epoch>.{index,data-<i>-of-<n>}

The aux arrays are a tiny fraction of the bytes, so a `MemberSelection` lets a caller take only
some kinds of files (``aux_arrays``, ``checkpoints``) and only some subset ratios. This module is
pure Python: it names and selects members; `heldout.release.download` (with
`heldout.release.http` and `heldout.release.tar`) moves the bytes.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterable, Sequence

from heldout.errors import InputError
from heldout.experiment import AUX_ARRAYS, CHECKPOINT_DIR, parse_ratio, parse_ratio_name

BASE_URL = "http://storage.googleapis.com/gresearch/heldout-training-checkpoints/"
GCS_URL = "gs://gresearch/heldout-training-checkpoints/"

#: Kinds of run files `MemberSelection.only` can name.
ONLY_KINDS = ("aux_arrays", "checkpoints")

_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclasses.dataclass(frozen=True)
class ReleaseArchive:
    """One released archive.

    Attributes:
      experiment: the name users type, e.g. ``"cifar10-inception"``.
      filename: the archive's file name on the server.
      md5: lowercase hex MD5 of the whole archive, as published.
    """

    experiment: str
    filename: str
    md5: str

    @property
    def url(self) -> str:
        """The public HTTP address."""
        return BASE_URL + self.filename

    @property
    def gs_url(self) -> str:
        """The same object as a Cloud Storage address (for `gsutil`)."""
        return GCS_URL + self.filename


#: The released archives by experiment name (MD5s as published; see the module docstring).
ARCHIVES: dict[str, ReleaseArchive] = {
    a.experiment: a
    for a in (
        ReleaseArchive(
            "cifar10-inception", "cifar10-inception.tar.gz", "bc3b75203381709f8224810946be14b1"
        ),
        ReleaseArchive(
            "cifar100-inception", "cifar100-inception.tar.gz", "f87218368528afa6e2407c8410f1ffa1"
        ),
        ReleaseArchive(
            "imagenet-resnet50", "imagenet-resnet50.tar.gz", "64c39ef7702462b83959af9de622b4b8"
        ),
    )
}


def get_archive(experiment: str) -> ReleaseArchive:
    """The released archive of an experiment.

    Raises:
      ValueError: `experiment` is not one of `ARCHIVES` (the message lists them).
    """
    try:
        return ARCHIVES[experiment]
    except KeyError:
        raise InputError(
            f"no released experiment {experiment!r}; the release has {', '.join(ARCHIVES)} "
            "(give `url` and `md5` for another archive)"
        ) from None


def check_md5(value: str) -> str:
    """Returns an MD5 given as 32 hex digits, lowercased.

    Raises:
      ValueError: anything else.
    """
    md5 = value.strip().lower()
    if not _MD5.match(md5):
        raise InputError(f"an MD5 is 32 hexadecimal digits, got {value!r}")
    return md5


# --------------------------------------------------------------------------------------------
# Members.


@dataclasses.dataclass(frozen=True)
class RunMember:
    """Where an archive member sits in the experiment layout.

    Attributes:
      experiment: the path components above the ratio directory, joined with ``/`` (``""`` when
        the archive starts at the ratio directories).
      ratio: the subset ratio's directory name, e.g. ``"0.7"``.
      run_id: the run's integer id.
      kind: ``"aux_arrays"`` (``aux_arrays.npz``), ``"checkpoints"`` (anything under
        ``checkpoints/``) or ``"other"`` (any other file of the run).
    """

    experiment: str
    ratio: str
    run_id: int
    kind: str


def is_ratio_name(name: str) -> bool:
    """True for a subset-ratio directory name such as ``0.7`` (`heldout.experiment.
    parse_ratio_name`)."""
    return parse_ratio_name(name) is not None


def parse_member(parts: Sequence[str]) -> RunMember | None:
    """Places a member's path components in the layout, or returns None outside any run.

    The first ``<ratio>/<run_id>/`` pair followed by at least one more component decides; the
    components before it name the experiment directory.
    """
    for i in range(len(parts) - 2):
        if is_ratio_name(parts[i]) and parts[i + 1].isdigit():
            rest = parts[i + 2 :]
            if list(rest) == [AUX_ARRAYS]:
                kind = "aux_arrays"
            elif rest[0] == CHECKPOINT_DIR and len(rest) > 1:
                kind = "checkpoints"
            else:
                kind = "other"
            experiment = posixpath.join(*parts[:i]) if i else ""
            return RunMember(experiment, parts[i], int(parts[i + 1]), kind)
    return None


def parse_only(text: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Parses ``--only``: comma-separated kinds from `ONLY_KINDS`; None or empty means all.

    Raises:
      ValueError: an unknown kind (the message lists the valid ones).
    """
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    kinds = tuple(dict.fromkeys(k.strip() for k in items if k.strip()))
    bad = [k for k in kinds if k not in ONLY_KINDS]
    if bad:
        raise InputError(
            f"`only` takes a comma-separated list of {', '.join(ONLY_KINDS)}; got {bad}"
        )
    return kinds or None


def parse_ratios(text: str | Iterable[float | str] | None) -> tuple[float, ...] | None:
    """Parses ``--ratios``: comma-separated subset ratios in (0, 1]; None or empty means all.

    Raises:
      ValueError: an item that is not a number in (0, 1].
    """
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    ratios = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        try:
            ratios.append(parse_ratio(item))
        except InputError:
            raise InputError(
                f"`ratios` takes comma-separated subset ratios such as 0.7,0.5, each in (0, 1]; "
                f"got {item!r}"
            ) from None
    return tuple(dict.fromkeys(ratios)) or None


@dataclasses.dataclass(frozen=True)
class MemberSelection:
    """Which archive members to extract.

    Attributes:
      only: kinds of run files to take (from `ONLY_KINDS`), or None for every file.
      ratios: subset ratios to take, or None for all. Compared by value, so ``0.5`` matches a
        ``0.50`` directory.

    With no filter at all every member is taken; with a filter, only files inside runs
    (``<ratio>/<run_id>/...``) that pass it are.
    """

    only: tuple[str, ...] | None = None
    ratios: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "only", parse_only(self.only))
        object.__setattr__(self, "ratios", parse_ratios(self.ratios))

    @classmethod
    def from_args(cls, only: str | None = None, ratios: str | None = None) -> MemberSelection:
        """Builds a selection from the ``--only`` and ``--ratios`` strings of the CLI.

        Raises:
          ValueError: see `parse_only` and `parse_ratios`.
        """
        return cls(parse_only(only), parse_ratios(ratios))

    @property
    def everything(self) -> bool:
        return self.only is None and self.ratios is None

    def wants_ratio(self, ratio: str) -> bool:
        return self.ratios is None or float(ratio) in self.ratios

    def wants(self, member: RunMember | None) -> bool:
        """True when a member (as placed by `parse_member`) is to be extracted."""
        if member is None:
            return self.everything
        if not self.wants_ratio(member.ratio):
            return False
        return self.only is None or member.kind in self.only

    def describe(self) -> str:
        """A short human description, e.g. ``aux_arrays of ratios 0.7, 0.5``."""
        what = ", ".join(self.only) if self.only else "all files"
        if self.ratios is None:
            return f"{what} of all ratios"
        return f"{what} of ratios {', '.join(f'{r:g}' for r in self.ratios)}"

    def missing_ratios(self, seen: Iterable[str]) -> tuple[float, ...]:
        """The requested ratios that are not among the ratio directory names `seen`."""
        if self.ratios is None:
            return ()
        values = {float(s) for s in seen}
        return tuple(r for r in self.ratios if r not in values)
