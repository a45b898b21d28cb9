"""Reduced-precision evaluation (TF32, bf16 autocast) with float32 re-evaluation of close calls.

In ``tf32`` and ``bf16`` modes the logits are approximate, so a prediction whose top-2 margin
(largest minus second-largest logit) is below a bound is evaluated again in float32 and its row
replaced: the argmax, hence ``correct``, is then the float32 one wherever the reduced-precision
error is below half the bound. ``tf32`` only changes CUDA matmuls and convolutions (on the CPU
it is float32); ``bf16`` autocasts convolutions and matmuls to bfloat16 on CUDA or the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from heldout.errors import HeldoutError

PRECISIONS = ("float32", "tf32", "bf16")
#: Default top-2 margin (in logits) below which a reduced-precision prediction is re-evaluated.
DEFAULT_MARGIN_BOUND = {"float32": 0.0, "tf32": 0.05, "bf16": 0.5}


class PrecisionError(HeldoutError, ValueError):
    """An unknown precision mode."""


def margin_bound_for(precision: str, device: torch.device, bound: float | None = None) -> float:
    """The re-evaluation bound: `bound` if given, else the precision's default; 0 where the
    mode is exact float32 (``float32``, and ``tf32`` off CUDA)."""
    if precision == "float32" or (precision == "tf32" and device.type != "cuda"):
        return 0.0
    return DEFAULT_MARGIN_BOUND[precision] if bound is None else float(bound)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Inference mode plus the precision's settings, restored on exit (no global state kept)."""
    check_precision(precision)
    with torch.inference_mode():
        if precision == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        elif precision == "tf32" and device.type == "cuda":
            old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
        else:
            yield


def top2_margin(logits: torch.Tensor) -> torch.Tensor:
    """[..., classes] -> [...]: largest minus second-largest logit (inf for one class)."""
    if logits.shape[-1] < 2:
        return torch.full(logits.shape[:-1], float("inf"), device=logits.device)
    top = torch.topk(logits.float(), 2, dim=-1).values
    return top[..., 0] - top[..., 1]


def reevaluate_close(
    logits: torch.Tensor,
    images: torch.Tensor,
    float32_fn: Callable[[torch.Tensor], torch.Tensor],
    bound: float,
) -> tuple[torch.Tensor, int]:
    """Replaces the rows of `logits` [b, classes] whose top-2 margin is below `bound` by
    ``float32_fn(images[rows])``; returns the float32 logits and how many rows were replaced."""
    logits = logits.float()
    if bound <= 0:
        return logits, 0
    rows = torch.nonzero(top2_margin(logits) < bound).flatten()
    if len(rows):
        with torch.inference_mode():
            logits[rows] = float32_fn(images[rows]).float()
    return logits, int(len(rows))
