"""How a run's stored images became its model's input: `InputPreprocessing` (numpy only).

Recorded when a run is trained (``run.json``, `heldout.train`), written into the metadata of
its exported model (`heldout export`, `heldout.export.tensorfile`) and applied by
`heldout.pytorch.preprocess`, so a model is always fed as it was trained and evaluated:

- in-memory datasets (TFDS, ``.npz``, IDX, scikit-learn's digits; `heldout.data.arrays`):
  uint8 pixels divided by the dataset's scale and nothing else: 255 for the release's CIFAR
  runs and for MNIST-like data, 16 for the digits (17 grey levels), an ``.npz`` file's
  ``__data_scale``. Float pixels in [0, 1] are used as they are (scale None: their uint8
  form is not known).
- ImageNet (`heldout.data.imagenet.tfrecords.EvalPreprocessing`): a centre crop of
  ``int(224 / (224 + 32) * min(H, W))`` pixels, bilinear resize to 224x224 (half-pixel
  centres, no antialiasing), uint8 / 255, then ``(x - mean) / std`` per channel with the
  ImageNet mean and standard deviation.

The released runs carry no ``run.json``; theirs is the release's (`RELEASED`: SmallInception
runs are CIFAR's uint8 / 255, ResNet-50 runs ImageNet's evaluation preprocessing).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from heldout.errors import PreprocessingError

#: Per-channel mean and standard deviation of the ImageNet runs' inputs (RGB, pixels in [0, 1]).
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class InputPreprocessing:
    """How uint8 images [H, W, C] become a model's float32 input [H', W', C].

    Applied in this order: centre crop and resize (when `resize` is set), ``x / scale``,
    ``(x - mean) / std`` per channel (when `mean` is set).

    Attributes:
      scale: uint8 pixels are divided by it (as float32); None when the run was trained on
        float pixels in [0, 1], used as they were (their uint8 form is not known).
      mean, std: per-channel normalisation after the division; None for none.
      resize: the side, in pixels, of the square bilinear resize (half-pixel centres, no
        antialiasing: `tf.image.resize`'s ``bilinear``); None keeps the images' size.
      crop_padding: with `resize`, the centre crop before the resize has side
        ``int(resize / (resize + crop_padding) * min(H, W))`` at offsets
        ``((H - side) + 1) // 2`` and ``((W - side) + 1) // 2``.
    """

    scale: float | None = 255.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: int | None = None
    crop_padding: int = 0

    def __post_init__(self) -> None:
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise PreprocessingError(f"scale must be a number > 0 or None, got {self.scale}")
        if (self.mean is None) != (self.std is None) or (
                self.mean is not None and len(self.mean) != len(self.std)):
            raise PreprocessingError(
                f"mean and std must be given together, one value per channel; got mean "
                f"{self.mean} and std {self.std}")
        if self.std is not None and min(self.std) <= 0:
            raise PreprocessingError(f"std must be > 0, got {self.std}")
        if self.resize is not None and self.resize < 1 or self.crop_padding < 0:
            raise PreprocessingError(
                f"need resize >= 1 (or None) and crop_padding >= 0, got {self.resize} and "
                f"{self.crop_padding}")

    def crop_window(self, height: int, width: int) -> tuple[int, int, int]:
        """The centre crop ``(top, left, side)`` of an image of `height` x `width` pixels,
        taken before the resize.

        Raises:
          PreprocessingError: no `resize` (then images are not cropped either).
        """
        if self.resize is None:
            raise PreprocessingError(f"{self.describe()}: no resize, so no crop")
        side = int(self.resize / (self.resize + self.crop_padding) * min(height, width))
        return ((height - side) + 1) // 2, ((width - side) + 1) // 2, side

    def describe(self) -> str:
        """One line for people, e.g. ``uint8 / 16`` (the metadata's ``input_scaling``)."""
        if self.scale is None:
            text = "float pixels in [0, 1] used as they are (no uint8 scaling)"
        else:
            text = f"uint8 / {self.scale:g}"
        if self.mean is not None:
            text += (f", then (x - mean) / std per channel, mean {list(self.mean)}, std "
                     f"{list(self.std)}")
        if self.resize is not None:
            crop = (f"centre crop of {self.resize}/{self.resize + self.crop_padding} of the "
                    "shorter side, " if self.crop_padding else "")
            text = (f"{crop}bilinear resize to {self.resize}x{self.resize} (half-pixel centres, "
                    f"no antialiasing), {text}")
        return text

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``run.json``, export metadata): every field, tuples as lists."""
        return {
            "scale": self.scale,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "resize": self.resize,
            "crop_padding": self.crop_padding,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "") -> InputPreprocessing:
        """Reads `to_dict` output (e.g. from ``run.json``).

        Raises:
          PreprocessingError: not a mapping, an unknown or malformed field (naming `source`).
        """
        source = source or "input preprocessing"
        if not isinstance(values, Mapping):
            raise PreprocessingError(f"{source}: expected a JSON object, found {values!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise PreprocessingError(f"{source}: unknown fields {unknown}; expected "
                                     f"{sorted(fields)}")
        try:
            kwargs = {
                "scale": None if values.get("scale") is None else float(values["scale"]),
                "mean": _floats(values.get("mean")),
                "std": _floats(values.get("std")),
                "resize": None if values.get("resize") is None else int(values["resize"]),
                "crop_padding": int(values.get("crop_padding", 0)),
            }
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise PreprocessingError(f"{source}: malformed input preprocessing {dict(values)} "
                                     f"({e})") from e


def _floats(value) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(v) for v in value)


#: The released runs' preprocessing by architecture (they have no run.json): the CIFAR runs'
#: uint8 / 255 with no other normalisation, the ImageNet runs' evaluation preprocessing.
RELEASED = {
    "small_inception": InputPreprocessing(255.0),
    "resnet50": InputPreprocessing(255.0, IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB, resize=224,
                                   crop_padding=32),
}
