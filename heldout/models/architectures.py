"""Architecture names, their input shapes and the released architecture of a dataset.

Pure Python (no TensorFlow), so the PyTorch side and the CLI's argument checks can use it.
"""

from __future__ import annotations

from heldout.errors import ArchitectureError

ARCHITECTURES = ("small_inception", "resnet50", "mlp")

#: Input shapes the architectures were released for ([height, width, channels]).
DEFAULT_INPUT_SHAPES = {
    "small_inception": (32, 32, 3),
    "resnet50": (224, 224, 3),
    "mlp": (28, 28, 1),
}


def default_arch(dataset_name: str, image_shape: tuple[int, ...]) -> str:
    """The released architecture for a dataset: ResNet-50 for ImageNet, SmallInception for
    32x32x3 images, the MNIST example's MLP for 28x28 and other single-channel images.

    Raises:
      ArchitectureError: no default for this input shape (pass an architecture explicitly).
    """
    if "imagenet" in dataset_name.lower() or tuple(image_shape) == (224, 224, 3):
        return "resnet50"
    if tuple(image_shape) == (32, 32, 3):
        return "small_inception"
    if tuple(image_shape[:2]) == (28, 28) or tuple(image_shape)[-1:] == (1,):
        return "mlp"
    raise ArchitectureError(
        f"no default architecture for {dataset_name} with images {tuple(image_shape)}; "
        "choose one with `arch`"
    )
