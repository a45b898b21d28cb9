"""Benchmark: `heldout.data.fingerprint.images_digest`, the digest of a split's images that runs'
recorded outputs carry and that `heldout predict` computes once per command before reading them.

For MNIST-size (60,000 x 28 x 28 x 1) and CIFAR-size (50,000 x 32 x 32 x 3) uint8 splits of
random pixels, times side by side, in a rotated order, the chunked digest and one
``hashlib.sha256(images.tobytes())`` (which copies the whole split first), checks that the two
hashes agree, and prints the best of the rounds in ms with the ratio (chunked / one copy) and
the memory the copy costs. On a machine shared with other work, quote the ratios.

Usage::

    PYTHONPATH=$PWD python benchmarks/images_digest.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np

from heldout.data.arrays import ArrayDataset
from heldout.data.fingerprint import images_digest

SHAPES = {"mnist": (60_000, 28, 28, 1), "cifar": (50_000, 32, 32, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for name, shape in SHAPES.items():
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        dataset = ArrayDataset(name, 10, {"train": images},
                               {"train": np.zeros(shape[0], np.int64)})
        ways = {"chunked": lambda d=dataset: images_digest(d, "train").rsplit(":", 1)[1],
                "one copy": lambda x=images: hashlib.sha256(x.tobytes()).hexdigest()}
        best = {way: float("inf") for way in ways}
        for r in range(args.rounds):
            order = list(ways)[r % 2:] + list(ways)[:r % 2]
            found = {}
            for way in order:
                t0 = time.perf_counter()
                found[way] = ways[way]()
                best[way] = min(best[way], time.perf_counter() - t0)
            assert len(set(found.values())) == 1, found
        print(f"{name} {images.nbytes / 1e6:.0f} MB: chunked {best['chunked'] * 1e3:.0f} ms, "
              f"one copy {best['one copy'] * 1e3:.0f} ms (ratio "
              f"{best['chunked'] / best['one copy']:.2f}; the copy holds "
              f"{images.nbytes / 1e6:.0f} MB more)")


if __name__ == "__main__":
    main()
