"""`heldout build-imagenet`: the indexed ImageNet TFRecord shards from ILSVRC-2012 files."""

from __future__ import annotations

import argparse
import os

from heldout.cli.common import RawDescriptionHelpFormatter
from heldout.errors import BuildError, CommandError

EXAMPLE = """example:
  heldout build-imagenet --train_dir ILSVRC2012/train --val_dir ILSVRC2012/val \\
      --index_npz imagenet_index.npz --out imagenet-tfrecords
  heldout verify imagenet-resnet50/0.7/0 --tfrecord_dir imagenet-tfrecords --split test \\
      --min_match_fraction 0.999
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `build-imagenet` to the `heldout` parser."""
    p = subparsers.add_parser(
        "build-imagenet",
        help="write the indexed ImageNet TFRecord shards from ILSVRC-2012 files",
        description=(
            "Writes train-<i>-of-<n> and validation-<i>-of-<n> TFRecord shards whose examples\n"
            "carry image/encoded, image/class/label (1-based), index and image/filename, from an\n"
            "ILSVRC-2012 directory tree and the published filename-to-index mapping\n"
            "(imagenet_index.npz). CMYK and PNG images are re-encoded as RGB JPEG. Resumable:\n"
            "shards that exist are skipped. Reports files of the mapping missing on disk, files\n"
            "on disk not in the mapping and synset disagreements (also in\n"
            "<out>/build_report.json). Exits 1 when files are missing or unreadable, synsets\n"
            "disagree, or shards are left unwritten."
        ),
        epilog=EXAMPLE,
        formatter_class=RawDescriptionHelpFormatter,
    )
    p.add_argument("--train_dir", default=None,
                   help="training images in synset folders <synset>/<name>.JPEG")
    p.add_argument("--val_dir", default=None,
                   help="validation images, flat or in synset folders")
    p.add_argument("--index_npz", required=True,
                   help="the published mapping: tr_filenames, tr_labels, tt_filenames, tt_labels")
    p.add_argument("--out", required=True, help="output directory for the shards")
    p.add_argument("--train_shards", type=int, default=1024,
                   help="number of training shards")
    p.add_argument("--val_shards", type=int, default=128, help="number of validation shards")
    p.add_argument("--num_workers", type=int, default=None,
                   help="shards written in parallel (default: min(8, CPUs))")
    p.add_argument("--allow_missing", action="store_true",
                   help="write shards even when some of their files are missing or unreadable")
    p.add_argument("--label_base", default="auto", choices=["auto", "0", "1"],
                   help="base of the mapping's labels (default: detected from the filenames)")
    p.add_argument("--synsets", default=None,
                   help="text file of the synsets in label order, first word per line (default: "
                   "the sorted synsets of the training filenames)")
    p.set_defaults(handler=build_imagenet_command)


def build_imagenet_command(args: argparse.Namespace) -> int:
    if args.train_dir is None and args.val_dir is None:
        raise CommandError("give --train_dir and/or --val_dir")
    for flag in ("train_dir", "val_dir"):
        value = getattr(args, flag)
        if value is not None and not os.path.isdir(value):
            raise CommandError(f"--{flag} {value}: no such directory")
    if not os.path.isfile(args.index_npz):
        raise CommandError(f"--index_npz {args.index_npz}: no such file")

    from heldout.quiet import import_tensorflow

    import_tensorflow()
    from heldout.data.imagenet.build import build_imagenet
    from heldout.data.imagenet.mapping import read_synsets

    try:
        synsets = read_synsets(args.synsets) if args.synsets else None
        report = build_imagenet(
            args.out,
            args.index_npz,
            train_dir=args.train_dir,
            val_dir=args.val_dir,
            num_shards={"train": args.train_shards, "test": args.val_shards},
            num_workers=args.num_workers,
            allow_missing=args.allow_missing,
            label_base=args.label_base,
            synsets=synsets,
        )
    except (BuildError, OSError) as e:
        raise CommandError(str(e)) from e
    for line in report.summary():
        print(line)
    print(f"report: {os.path.join(args.out, 'build_report.json')}")
    return 0 if report.ok else 1
