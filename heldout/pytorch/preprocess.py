"""Feeding an exported model as its run was trained: uint8 NHWC images to its NCHW input.

`preprocess` applies the input preprocessing an exported model's metadata records
(`heldout.data.preprocessing.InputPreprocessing`, written by `heldout export` from the run's
``run.json`` or the release): for in-memory datasets ``uint8 / scale`` (255 for CIFAR and
MNIST-like data, 16 for scikit-learn's digits); for ImageNet the evaluation preprocessing of
`heldout.data.imagenet.tfrecords` (centre crop, bilinear resize to 224x224 with half-pixel
centres and no antialiasing, as ``tf.image.resize``; uint8 / 255; per-channel mean and standard
deviation), in the same float32 operations and order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from heldout.data.preprocessing import InputPreprocessing
from heldout.errors import PreprocessingError
from heldout.export.tensorfile import Metadata


def preprocess(
    images: np.ndarray | torch.Tensor | Sequence[np.ndarray],
    spec: Metadata | InputPreprocessing,
) -> torch.Tensor:
    """The model input of uint8 images, as the exported run was trained and evaluated.

    Args:
      images: uint8 NHWC [b, H, W, C] (numpy or torch), or a sequence of uint8 [H, W, C]
        images of different sizes (ImageNet photographs, which the crop and resize bring to
        one size). Float images in [0, 1] are accepted only for a run trained on float pixels
        (scale None), and used as they are.
      spec: the model's `Metadata` (``load_model(...).metadata``), whose
        ``input_preprocessing`` is applied and whose ``input_shape`` the result must fit, or
        an `InputPreprocessing` (e.g. to supply an unknown one).

    Returns:
      float32 tensor [b, C, H', W'] (NCHW, contiguous, on the CPU), ready for the model.

    Raises:
      PreprocessingError: the preprocessing is unknown (the metadata says why), images of
        another dtype or layout, of sizes that differ without a resize, or a result that does
        not fit the model's input shape.
    """
    pre, shape = spec, None
    if isinstance(spec, Metadata):
        pre, shape = spec.input_preprocessing, tuple(spec.input_shape)
        if pre is None:
            raise PreprocessingError(
                f"the model's input preprocessing is {spec.input_scaling} "
                f"({spec.input_preprocessing_source or 'not in its metadata'}); pass one, e.g. "
                "preprocess(images, InputPreprocessing(scale=255.0))")
    batch = [_one(image, pre) for image in _images(images, pre)]
    if not batch:
        raise PreprocessingError("no images to preprocess")
    sizes = {tuple(x.shape) for x in batch}
    if len(sizes) > 1:
        raise PreprocessingError(
            f"images of different sizes {sorted(sizes)[:3]} and no resize in the input "
            f"preprocessing ({pre.describe()}); give images of the model's size")
    out = torch.stack(batch).permute(0, 3, 1, 2).contiguous()
    if shape is not None and tuple(out.shape[2:]) + (out.shape[1],) != shape:
        found = "x".join(map(str, (*out.shape[2:], out.shape[1])))
        raise PreprocessingError(
            f"preprocessed images are {found} (HxWxC) but the model takes "
            f"{'x'.join(map(str, shape))}: images of another dataset?")
    return out


def _images(images, pre: InputPreprocessing) -> list[torch.Tensor]:
    """The images as a list of [H, W, C] tensors, dtype-checked against `pre`."""
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim != 4:
            raise PreprocessingError(
                f"expected NHWC images [b, H, W, C], found shape {tuple(images.shape)}")
        images = list(images)
    out = []
    for image in images:
        tensor = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor)
                                 else image)
        if tensor.ndim != 3:
            raise PreprocessingError(f"expected an image [H, W, C], found shape "
                                     f"{tuple(tensor.shape)}")
        want = "float" if pre.scale is None else "uint8"
        ok = tensor.is_floating_point() if pre.scale is None else tensor.dtype == torch.uint8
        if not ok:
            raise PreprocessingError(
                f"the input preprocessing ({pre.describe()}) takes {want} images, found "
                f"{tensor.dtype}")
        out.append(tensor)
    return out


def _one(image: torch.Tensor, pre: InputPreprocessing) -> torch.Tensor:
    """One [H, W, C] image through `pre`'s crop and resize, scaling and normalisation."""
    x = image.to(torch.float32)
    if pre.resize is not None:
        top, left, side = pre.crop_window(int(x.shape[0]), int(x.shape[1]))
        x = x[top:top + side, left:left + side]
        x = F.interpolate(x.permute(2, 0, 1)[None], size=(pre.resize, pre.resize),
                          mode="bilinear", align_corners=False, antialias=False)[0]
        x = x.permute(1, 2, 0)
    if pre.scale is not None:
        x = x / torch.tensor(pre.scale, dtype=torch.float32)
    if pre.mean is not None:
        x = (x - torch.tensor(pre.mean, dtype=torch.float32)) / torch.tensor(
            pre.std, dtype=torch.float32)
    return x
