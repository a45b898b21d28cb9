"""The released models in PyTorch, from files written by `heldout export`.

Needs PyTorch: ``pip install -e '.[torch]'`` (the ``torch`` extra; importing this package
without it raises an ImportError saying so). Imports only numpy, torch and safetensors (no
TensorFlow, Sonnet or TFDS), so it runs where only those are installed (a GPU machine).
`load_model(path)` gives an eval-mode ``torch.nn.Module`` taking NCHW float32 images and
returning logits, with the exported ``metadata`` (architecture, input shape, the input
preprocessing its run was trained with); `preprocess(images, model.metadata)` turns uint8 NHWC
images into that input; `TorchBackend` (`heldout.pytorch.backend`) restores runs of an exported
tree and evaluates NHWC batches, in float32, TF32 or bf16 (the backend of ``heldout verify
--backend torch`` and ``heldout predict --backend torch``, which re-evaluate exported runs and
cross-check them through `heldout.evaluate.verify_run`, TensorFlow not needed);
`StackedModels` evaluates K runs at once.
"""

try:
    import torch  # noqa: F401
except ImportError as e:  # the one message, wherever heldout.pytorch is first imported
    raise ImportError(
        f"heldout.pytorch needs PyTorch, which could not be imported ({e}); install heldout's "
        "'torch' extra: pip install -e '.[torch]' (from the clone), or pip install 'torch>=2.0'"
    ) from e

from heldout.data.preprocessing import InputPreprocessing
from heldout.export.tensorfile import Metadata
from heldout.pytorch.load import build_torch_model, exported_shapes, load_model, load_tensors
from heldout.pytorch.networks import MLP, ResNet50, SmallInception
from heldout.pytorch.preprocess import preprocess

__all__ = ["MLP", "InputPreprocessing", "Metadata", "ResNet50", "SmallInception",
           "build_torch_model", "exported_shapes", "load_model", "load_tensors", "preprocess"]
