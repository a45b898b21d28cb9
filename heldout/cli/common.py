"""Helpers shared by the `heldout` sub-commands."""

from __future__ import annotations

import argparse

from heldout.errors import HeldoutError


class CommandError(HeldoutError):
    """A user-facing failure: printed as `heldout <command>: error: <message>`, exit status 2."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def add_dataset_flags(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """`--dataset NAME:VERSION | --dataset_npz PATH | --tfrecord_dir DIR`, `--data_dir` and
    `--index_npz`."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--dataset", help="TFDS dataset, e.g. cifar10:3.0.2 or cifar100:3.0.2")
    group.add_argument("--dataset_npz", help=".npz dataset with <split>__image/<split>__label")
    group.add_argument("--tfrecord_dir", help="indexed TFRecord shards, e.g. ImageNet written by "
                       "`heldout build-imagenet` (test split = validation shards)")
    group.add_argument("--idx_dir", help="directory of MNIST-format IDX files")
    parser.add_argument("--data_dir", default=None, help="TFDS data directory")
    parser.add_argument("--index_npz", default=None, help="with --tfrecord_dir: the published "
                        "imagenet_index.npz, for the labels when the shards have no labels.npz")
