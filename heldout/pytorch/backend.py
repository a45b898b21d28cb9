"""`TorchBackend`: evaluating exported runs in PyTorch, one run at a time, a
`heldout.evaluate.Backend` (``restore(run)`` then ``logits(images)``) for `heldout verify
--backend torch` and `heldout predict --backend torch`; and `StackedModels`, K runs at once with
``torch.func.stack_module_state`` and ``vmap``."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from heldout.errors import BackendError
from heldout.evaluate.backend import RestoredRun
from heldout.export.tensorfile import find_tensor_file, read_tensor_file
from heldout.pytorch.load import build_torch_model, load_tensors, resolve_spec
from heldout.pytorch.precision import (
    check_precision,
    close_calls,
    margin_bound_for,
    precision_context,
    reevaluate_close,
)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_nchw(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """float32 NHWC numpy [b, H, W, C] -> NCHW tensor on `device` (channels-last memory)."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(device)
    return x.permute(0, 3, 1, 2)


class TorchBackend:
    """Evaluates exported runs (``<run.path>/model.safetensors``, else ``model.npz``).

    Args:
      arch, num_classes, input_shape: the model every restored run must fit.
      device: default CUDA when available, else the CPU.
      precision: ``float32``, ``tf32`` or ``bf16`` (see `heldout.pytorch.precision`).
      margin_bound: an absolute top-2 margin (logits) below which reduced-precision predictions
        are re-evaluated in float32; default None, the mode's measured bound relative to each
        prediction's largest |logit| (`heldout.pytorch.precision`). `num_reevaluated` counts
        the predictions re-evaluated, `num_evaluated` all of them.

    Raises (restore): TensorFileError, a HeldoutError: no exported model in the run directory,
      or tensors that do not fit (named); NonFiniteWeightsError: a NaN or infinite weight or
      moving statistic. The backend is then not usable (`logits` raises `BackendError`)
      until a restore succeeds, so it never evaluates a stale run.
    """

    name = "torch"

    def __init__(self, arch: str, num_classes: int, input_shape: Sequence[int],
                 device: str | torch.device | None = None, precision: str = "float32",
                 **options):
        self.arch, self.num_classes = arch, int(num_classes)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.device = torch.device(device) if device is not None else default_device()
        self.precision = check_precision(precision)
        self.margin_bound = margin_bound_for(precision, self.device, options.pop("margin_bound",
                                                                                 None))
        if options:
            raise TypeError(f"TorchBackend: unknown options {sorted(options)}")
        self._template = build_torch_model(arch, self.num_classes, self.input_shape)
        self.model: nn.Module | None = None
        self._restored: RestoredRun | None = None
        self.num_reevaluated = 0
        self.num_evaluated = 0

    def restore(self, run) -> RestoredRun:
        """Loads a run's exported tensors (a `heldout.experiment.Run`; `run.path` is used),
        every value checked finite (`heldout.pytorch.load.load_tensors`)."""
        self._restored = None  # unusable until this restore has fully succeeded
        path = find_tensor_file(run.path)
        tensor_file = read_tensor_file(path)
        meta = resolve_spec(tensor_file, self.arch, self.num_classes, self.input_shape)
        model = copy.deepcopy(self._template) if self.model is None else self.model
        load_tensors(model, tensor_file.tensors, path)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self._restored = RestoredRun(meta.epoch, meta.global_step, path)
        return self._restored

    def _float32(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """float32 NHWC [b, H, W, C] (scaled as the export says) -> float32 [b, num_classes]."""
        if self._restored is None:
            raise BackendError("logits asked of a model with no successfully restored run")
        x = to_nchw(images, self.device).contiguous(memory_format=torch.channels_last)
        with precision_context(self.precision, self.device):
            out = self.model(x)
        out, n = reevaluate_close(out, x, self._float32, self.margin_bound)
        self.num_reevaluated += n
        self.num_evaluated += len(images)
        return out.float().cpu().numpy()


class StackedModels:
    """K models of one architecture evaluated together: their parameters stacked
    (``torch.func.stack_module_state``) and the forward ``vmap``-ed over them.

    Args:
      models: K loaded models (e.g. from `load_model`), same architecture and shapes.
      device, precision, margin_bound: as for `TorchBackend`.
    """

    def __init__(self, models: Sequence[nn.Module], device: str | torch.device | None = None,
                 precision: str = "float32", margin_bound: float | None = None):
        from torch.func import functional_call, stack_module_state, vmap

        self.device = torch.device(device) if device is not None else default_device()
        self.precision = check_precision(precision)
        self.margin_bound = margin_bound_for(precision, self.device, margin_bound)
        models = [m.to(self.device).eval() for m in models]
        self.params, self.buffers = stack_module_state(models)
        self._base = copy.deepcopy(models[0]).to("meta")
        self.num_models = len(models)
        self.num_reevaluated = 0

        def one(params, buffers, x):
            return functional_call(self._base, (params, buffers), (x,))

        self._vmapped = vmap(one, in_dims=(0, 0, None))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._vmapped(self.params, self.buffers, x)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """float32 NHWC [b, H, W, C] -> float32 [K, b, num_classes], model k's logits in row k."""
        x = to_nchw(images, self.device).contiguous()
        with precision_context(self.precision, self.device):
            out = self._forward(x)
        out = out.float()
        if self.margin_bound.active:
            with torch.inference_mode():
                close = close_calls(out, self.margin_bound)
                rows = torch.nonzero(close.any(dim=0)).flatten()
                if len(rows):
                    exact = self._forward(x[rows]).float()
                    mask = close[:, rows]
                    out[:, rows] = torch.where(mask[..., None], exact, out[:, rows])
                    self.num_reevaluated += int(mask.sum())
        return out.cpu().numpy()
