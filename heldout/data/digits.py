"""A small image dataset that needs no download: scikit-learn's handwritten digits.

`sklearn.datasets.load_digits` ships inside scikit-learn: 1,797 images of 8x8 pixels with 17
grey levels (0-16), 10 classes, from the UCI "Optical Recognition of Handwritten Digits" data
(scikit-learn's documentation of `load_digits`). It is the default data of the MNIST example's
quick start: large enough for held-out estimates to mean something, small enough to train
hundreds of models in a minute on a laptop CPU.

The split is fixed: the first ``1797 - test_size`` images are ``train`` and the rest ``test``,
in scikit-learn's order (``index`` = position in the split).
"""

from __future__ import annotations

import numpy as np

from heldout.data.arrays import ArrayDataset
from heldout.errors import DatasetError

NUM_DIGITS = 1797
DIGITS_SCALE = 16.0
DEFAULT_TEST_SIZE = 500


def load_digits(test_size: int = DEFAULT_TEST_SIZE) -> ArrayDataset:
    """scikit-learn's 8x8 digits as a dataset with ``train`` and ``test`` splits.

    Args:
      test_size: number of images, from the end, in the ``test`` split.

    Returns:
      An `ArrayDataset` named ``sklearn-digits``: images uint8 [n, 8, 8, 1] with values 0-16,
      labels int64 [n], scale 16 (so model inputs lie in [0, 1]).

    Raises:
      ImportError: scikit-learn is not installed (the message says how to install it).
      DatasetError: `test_size` outside ``[1, 1796]``.
    """
    if not 0 < test_size < NUM_DIGITS:
        raise DatasetError(f"test_size must lie in [1, {NUM_DIGITS - 1}], got {test_size}")
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as e:
        raise ImportError(
            "the digits dataset ships with scikit-learn: pip install scikit-learn "
            "(or install heldout with its 'examples' extra)"
        ) from e
    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images)
    labels = np.asarray(bunch.target, dtype=np.int64)
    if images.shape != (NUM_DIGITS, 8, 8) or images.min() < 0 or images.max() > DIGITS_SCALE:
        raise DatasetError(
            f"scikit-learn's digits: expected {NUM_DIGITS} images of 8x8 in [0, 16], found "
            f"{images.shape} in [{images.min()}, {images.max()}]"
        )
    images = images.astype(np.uint8)[..., None]
    cut = NUM_DIGITS - test_size
    return ArrayDataset(
        "sklearn-digits",
        10,
        {"train": images[:cut], "test": images[cut:]},
        {"train": labels[:cut], "test": labels[cut:]},
        DIGITS_SCALE,
    )
