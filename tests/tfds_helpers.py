"""Helpers for tests that run TFDS offline under `tfds.testing.mock_data`."""

import os

import tensorflow_datasets as tfds


def write_metadata(data_dir: str, name: str, sizes: dict[str, int]) -> None:
    """Writes TFDS metadata (dataset_info.json) with split sizes, so that
    `tfds.testing.mock_data` knows the splits without the real files."""
    builder = tfds.builder(name, data_dir=data_dir)
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0) for s, n in sizes.items()
    ]))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
