"""`heldout download` and `heldout extract`: get the released experiments.

Examples::

    # Only the aux arrays of two subset ratios, streamed (the archive is never stored):
    heldout download cifar10-inception --dest data --only aux_arrays --ratios 0.7,0.5
    # Save the archive (resumable, MD5-verified), then extract everything:
    heldout download cifar10-inception --dest data --keep_archive
    # Extract from an archive already on disk:
    heldout extract data/cifar10-inception.tar.gz --dest data --only aux_arrays
"""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING

from heldout.errors import CommandError, DownloadError
from heldout.release.archives import ARCHIVES, ONLY_KINDS, MemberSelection

if TYPE_CHECKING:
    from heldout.release.tar import ExtractSummary


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `download` and `extract` to the `heldout` parser."""
    released = ", ".join(f"{a.experiment} (MD5 {a.md5})" for a in ARCHIVES.values())
    download = subparsers.add_parser(
        "download",
        help="download a released experiment (streamed, resumable, MD5-verified)",
        description=textwrap.fill(
            "Download a released experiment and extract the members asked for. By default the "
            "archive is read over HTTP once and extracted while it is read, never stored; an "
            "interrupted connection is resumed where the server supports ranges. The MD5 of "
            "the whole archive is checked at the end, and the files appear in DIR only then. "
            "A stopped download (killed, Ctrl-C, retries given up) leaves no file in DIR "
            "other than its hidden staging directory (DIR/.ARCHIVE.partial); "
            "run the same command again: a stream is read again from byte 0 (the gzip and "
            "MD5 states of a stream cannot be saved), but the members already extracted are "
            "compared with it, not written again; with --keep_archive the download goes on "
            f"from the byte reached. Released: {released}.",
            width=79,
        ),
        epilog="examples:" + __doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    download.add_argument(
        "experiment",
        metavar="EXPERIMENT",
        help=f"one of {', '.join(ARCHIVES)}, or any name with --url",
    )
    download.add_argument("--dest", required=True, metavar="DIR", help="destination directory")
    _add_selection(download)
    download.add_argument(
        "--keep_archive",
        action="store_true",
        help="save the archive in DIR (MD5-verified; a stopped download goes on from the "
        "byte reached), then extract from it; needs the archive's size free in DIR",
    )
    download.add_argument(
        "--url", metavar="URL", help="another address for the archive (a mirror); needs --md5"
    )
    download.add_argument(
        "--md5", metavar="HEX", help="expected MD5 of the archive at --url (32 hex digits)"
    )
    download.set_defaults(handler=_download)

    extract = subparsers.add_parser(
        "extract",
        help="extract a local release archive",
        description=(
            "Extract the members asked for from a release archive on disk (tar.gz or tar), "
            "reading it once as a stream. Its MD5 is not checked here: `heldout download "
            "--keep_archive` does that."
        ),
    )
    extract.add_argument("archive", metavar="ARCHIVE", help="the .tar.gz file")
    extract.add_argument("--dest", required=True, metavar="DIR", help="destination directory")
    _add_selection(extract)
    extract.set_defaults(handler=_extract)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        metavar="KINDS",
        help=f"extract only these kinds of run files, comma-separated: {', '.join(ONLY_KINDS)}",
    )
    parser.add_argument(
        "--ratios",
        metavar="LIST",
        help="extract only these subset ratios, comma-separated, e.g. 0.7,0.5",
    )


def _download(args: argparse.Namespace) -> int:
    from heldout.release.download import download_release

    if args.md5 is not None and args.url is None:
        raise CommandError("--md5 goes with --url; the released archives' MD5s are built in")
    selection = MemberSelection.from_args(args.only, args.ratios)
    try:
        result = download_release(
            args.experiment,
            args.dest,
            selection,
            keep_archive=args.keep_archive,
            url=args.url,
            md5=args.md5,
        )
    except (DownloadError, OSError) as e:
        raise CommandError(str(e)) from e
    print(f"{result.url}: {result.size:,} bytes, MD5 {result.md5} verified.")
    return _report(result.summary, args.experiment, selection)


def _extract(args: argparse.Namespace) -> int:
    from heldout.release.tar import extract_archive

    selection = MemberSelection.from_args(args.only, args.ratios)
    try:
        summary = extract_archive(args.archive, args.dest, selection)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CommandError(str(e)) from e
    return _report(summary, args.archive, selection)


def _report(summary: ExtractSummary, source: str, selection: MemberSelection) -> int:
    print(summary.format())
    if summary.files == 0:
        have = ", ".join(summary.ratios_in_archive) or "none"
        raise CommandError(
            f"no member of {source} matched ({selection.describe()}); the archive has ratios {have}"
        )
    return 0
