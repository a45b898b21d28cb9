"""The released models in PyTorch, from files written by `heldout export`.

Imports only numpy, torch and safetensors (no TensorFlow, Sonnet or TFDS), so it runs where
only those are installed (a GPU machine). `load_model(path)` gives an eval-mode
``torch.nn.Module`` taking NCHW float32 images and returning logits; `TorchBackend`
(`heldout.pytorch.backend`) restores runs of an exported tree and evaluates NHWC batches, in
float32, TF32 or bf16 (the backend of ``heldout verify --backend torch`` and ``heldout predict
--backend torch``, which re-evaluate exported runs and cross-check them through
`heldout.evaluate.verify_run`, TensorFlow not needed); `StackedModels` evaluates K runs at once.
"""

from heldout.pytorch.load import build_torch_model, exported_shapes, load_model, load_tensors
from heldout.pytorch.networks import MLP, ResNet50, SmallInception

__all__ = ["MLP", "ResNet50", "SmallInception", "build_torch_model", "exported_shapes",
           "load_model", "load_tensors"]
