"""Co-occurrence counts ``T^T M`` of 0/1 tiles: exact int32 through int8 matrix products.

Every influence estimate (the full matrix, top-k lists, high-influence pairs, standard errors)
is formed from the co-occurrence counts ``cooc[j, i] = sum_r T[r, j] M[r, i]`` of the runs' test
correctness T and subset masks M, both 0/1. `cooccurrence` is the one function that forms them,
with one of two product backends:

- ``torch``: int8 inputs multiplied into exact int32 counts by ``torch._int_mm`` (PyTorch's
  integer GEMM: oneDNN's s8s8s32 kernels on the CPU, cuBLASLt's int8 GEMM on CUDA). On the
  project's AVX-512 CPUs it ran at 364 GOP/s against 140 GFLOP/s for float32 on the same
  shapes (two threads; issue 22); `benchmarks/estimate.py` measures the influence stage. On a
  GPU, int8 tensor cores are an order of magnitude beyond.
- ``numpy``: the float32 GEMM of numpy's BLAS, exact for counts below 2**24 runs: the fallback
  for machines without PyTorch.

Both give the same counts, so every influence value built from them is identical bit for bit
(the float32 arithmetic after the counts is the same code). `product_backend` chooses:
``"auto"`` takes ``torch`` when PyTorch (with ``torch._int_mm``) is importable and ``numpy``
otherwise; ``device="cuda"`` runs the products on the GPU (the counts come back to the host).
PyTorch is imported only when a torch backend is chosen, never by importing this module.

Shape constraints of ``torch._int_mm`` (PyTorch's ``_int_mm_out_cuda`` checks): on CUDA the
first operand needs more than 16 rows, the inner dimension and the output's columns must be
multiples of 8, and the result must be contiguous; on the CPU only the result must be
contiguous. The CUDA path pads with zeros (zero rows and columns add nothing to a count) and
crops the result.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout.errors import EstimateError

BACKENDS = ("auto", "torch", "numpy")
DEVICES = ("cpu", "cuda")

#: torch._int_mm on CUDA: rows of the first operand (> 16), multiples of the inner dimension
#: and of the output's columns.
_CUDA_MIN_ROWS, _CUDA_MULTIPLE = 17, 8


@dataclasses.dataclass(frozen=True)
class ProductBackend:
    """A resolved way of forming co-occurrence counts (see `product_backend`).

    Attributes:
      name: ``"torch"`` (int8 -> int32, ``torch._int_mm``) or ``"numpy"`` (float32 GEMM).
      device: ``"cpu"`` or ``"cuda"`` (``"cuda"`` only with ``torch``).
    """

    name: str
    device: str = "cpu"

    @property
    def operand_dtype(self) -> np.dtype:
        """dtype of the 0/1 tiles the products take: int8 (torch) or float32 (numpy)."""
        return np.dtype(np.int8 if self.name == "torch" else np.float32)

    @property
    def count_dtype(self) -> np.dtype:
        """dtype of the counts: int32 (torch) or float32 holding integers (numpy)."""
        return np.dtype(np.int32 if self.name == "torch" else np.float32)

    def describe(self) -> str:
        """``torch-int8-cpu``, ``torch-int8-cuda`` or ``numpy-float32``: the name printed by
        `heldout estimate` and recorded in its file (key ``cooccurrence_backend``)."""
        return f"torch-int8-{self.device}" if self.name == "torch" else "numpy-float32"


def _import_torch():
    """torch, or None when it is not installed or has no ``_int_mm`` (PyTorch < 2.1)."""
    try:
        import torch
    except ImportError:
        return None
    return torch if hasattr(torch, "_int_mm") else None


def product_backend(backend: str | ProductBackend = "auto", device: str = "cpu"
                    ) -> ProductBackend:
    """Resolves a backend name and a device into a `ProductBackend`.

    Args:
      backend: ``"auto"`` (torch when importable, else numpy), ``"torch"`` or ``"numpy"``; a
        `ProductBackend` is returned as it is.
      device: ``"cpu"`` or ``"cuda"`` (needs PyTorch with a visible CUDA device).

    Raises:
      EstimateError: an unknown name, ``"torch"`` or ``"cuda"`` without PyTorch, ``"cuda"``
        without a CUDA device or with the numpy backend (one line saying which).
    """
    if isinstance(backend, ProductBackend):
        return backend
    if backend not in BACKENDS:
        raise EstimateError(f"product backend must be one of {BACKENDS}, got {backend!r}")
    if device not in DEVICES:
        raise EstimateError(f"device must be one of {DEVICES}, got {device!r}")
    if backend == "numpy":
        if device != "cpu":
            raise EstimateError(f"device {device!r} needs the torch backend; the numpy backend "
                                "runs on the CPU")
        return ProductBackend("numpy")
    torch = _import_torch()
    if torch is None:
        if backend == "auto" and device == "cpu":
            return ProductBackend("numpy")
        raise EstimateError(
            f"{'device ' + repr(device) if device != 'cpu' else 'backend ' + repr(backend)} "
            "needs PyTorch >= 2.1 (torch._int_mm), which is not installed: pip install -e "
            "'.[torch]', or use backend 'numpy' on the CPU"
        )
    if device == "cuda" and not torch.cuda.is_available():
        build = ("a CPU-only build" if torch.version.cuda is None
                 else f"built for CUDA {torch.version.cuda}, but no GPU is visible")
        raise EstimateError(f"device 'cuda': PyTorch {torch.__version__} sees no CUDA device "
                            f"({build}); use device 'cpu'")
    return ProductBackend("torch", device)


def cooccurrence(
    t: np.ndarray,
    m: np.ndarray,
    backend: str | ProductBackend = "auto",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Co-occurrence counts ``t.T @ m`` of 0/1 tiles, exact.

    Args:
      t: 0/1 [R, rows], e.g. test correctness ``T[r, j]`` of test examples j (any numeric
        dtype; converted to the backend's `ProductBackend.operand_dtype` unless it is one).
      m: 0/1 [R, cols], e.g. subset masks ``M[r, i]`` of training examples i.
      backend: a `ProductBackend` or a name for `product_backend`.
      out: optional [rows, cols] array of the backend's `count_dtype` to write into
        (C-contiguous for torch; numpy's may be a strided view, e.g. a tile of a result).

    Returns:
      counts [rows, cols]: int32 (torch) or float32 holding exact integers (numpy, exact below
      2**24 runs), ``counts[j, i] = sum_r t[r, j] m[r, i]``.

    Raises:
      EstimateError: shapes that do not fit, `out` of the wrong shape or dtype, or too many
        runs for exact float32 counts; see `product_backend` for the backend's errors.
    """
    backend = product_backend(backend)
    if t.ndim != 2 or m.ndim != 2 or t.shape[0] != m.shape[0]:
        raise EstimateError(f"co-occurrence of [R, rows] and [R, cols] tiles, got {t.shape} and "
                            f"{m.shape}")
    shape = (t.shape[1], m.shape[1])
    if out is None:
        out = np.empty(shape, backend.count_dtype)
    elif out.shape != shape or out.dtype != backend.count_dtype or (
            backend.name == "torch" and not out.flags.c_contiguous):
        raise EstimateError(f"out must be a {backend.count_dtype} array of shape {shape} "
                            f"(C-contiguous for torch), found {out.dtype} {out.shape}")
    if backend.name == "numpy":
        t, m = np.asarray(t, np.float32), np.asarray(m, np.float32)
        if t.shape[0] >= 2**24:
            raise EstimateError(f"{t.shape[0]} runs: float32 counts are exact below 2**24; use "
                                "the torch backend")
        return np.matmul(t.T, m, out=out)
    if 0 in (t.shape[0], *shape):
        out[...] = 0
        return out
    t, m = (np.require(x, np.int8, ["C", "W"]) for x in (t, m))  # torch views them
    _torch_counts(t, m, out, backend.device, pad=backend.device == "cuda")
    return out


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _torch_counts(t: np.ndarray, m: np.ndarray, out: np.ndarray, device: str, pad: bool) -> None:
    """``torch._int_mm`` of int8 ``t.T`` [rows, R] and ``m`` [R, cols] into int32 `out`.

    On the CPU both operands are zero-copy views and the product writes straight into `out`.
    On CUDA (`pad`, which tests also exercise on the CPU) the operands go to the device zero-
    padded to its constraints, as cuBLASLt's preferred int8 layout (the first operand row-major,
    the second column-major), and the cropped product is copied back into `out`.
    """
    import torch

    if not pad:
        torch._int_mm(torch.from_numpy(t).T, torch.from_numpy(m), out=torch.from_numpy(out))
        return
    runs, rows, cols = t.shape[0], t.shape[1], m.shape[1]
    k = _round_up(runs, _CUDA_MULTIPLE)
    a = torch.zeros((max(rows, _CUDA_MIN_ROWS), k), dtype=torch.int8, device=device)
    b = torch.zeros((_round_up(cols, _CUDA_MULTIPLE), k), dtype=torch.int8, device=device)
    a[:rows, :runs] = torch.from_numpy(t).to(device).T
    b[:cols, :runs] = torch.from_numpy(m).to(device).T
    counts = torch._int_mm(a, b.T)  # [rows', cols'], b.T column-major
    out[...] = counts[:rows, :cols].cpu().numpy()
