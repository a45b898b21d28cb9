"""Reduced-precision evaluation (TF32, bf16 autocast) with float32 re-evaluation of close calls.

In ``tf32`` and ``bf16`` modes the logits are approximate, so a prediction whose top-2 margin
(largest minus second-largest logit) is below a bound is evaluated again in float32 and its row
replaced. If the reduced-precision error of any difference of two logits z_a - z_b is below
the bound, a prediction kept (margin >= bound) has float32's argmax, so ``correct`` is exact.
``tf32`` only changes CUDA matmuls and convolutions (on the CPU it is float32); ``bf16``
autocasts convolutions and matmuls to bfloat16 on CUDA or the CPU.

The bound (`MarginBound`), per prediction: ``K * u * max_j |z_j|``, with u the mode's unit
roundoff (bf16 keeps 8 significant bits, u = 2**-8; TF32 11, u = 2**-11), max_j |z_j| the
prediction's largest absolute logit, and K = `BOUND_FACTOR` = 24. Why this form: every input
of a convolution or matmul is rounded to the mode's precision, a relative error of at most u
each, so the error of the logits grows with u and with their scale; a bound in units of
u * max|z| needs no retuning for a model whose logits are larger (ImageNet's) or for another
mode. Why K = 24, measured on the fmnist32 fixture runs (3 runs x 2,500 images, CPU, batches
of 500, `heldout.pytorch` SmallInception): the worst error of a logit difference, max over
pairs |(z_a - z_b)_low - (z_a - z_b)_float32|, was at most 10.9 u max|z| (0.199 logits) with
bf16 autocast, and at most 6.7 u max|z| (0.0138 logits) with TF32 emulated (inputs and weights
of every convolution and matmul rounded to 11 significant bits, float32 accumulation: what
TF32 tensor cores do); the 99.9th percentiles were 6.9 and 5.0. K = 24 leaves a factor 2.2
over the worst bf16 case and 3.6 over TF32's. With it, 623 of the 7,500 bf16 predictions
(8.3%) and 83 of the TF32 ones (1.1%) were re-evaluated, and all 19 bf16 argmax flips (the
largest at a bf16 margin of 0.047) were among them. This is a measured bound, not a proof:
pass an absolute ``margin_bound`` to override it. ``benchmarks/precision_error.py`` prints
these figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import torch

from heldout.errors import PrecisionError

PRECISIONS = ("float32", "tf32", "bf16")
#: Unit roundoff u of the inputs of convolutions and matmuls in each mode (0: exact float32).
UNIT_ROUNDOFF = {"float32": 0.0, "tf32": 2.0**-11, "bf16": 2.0**-8}
#: K of the default bound K * u * max_j |z_j| (see the module docstring for the measurement).
BOUND_FACTOR = 24.0


@dataclasses.dataclass(frozen=True)
class MarginBound:
    """The top-2 margin below which a prediction is re-evaluated in float32.

    Attributes:
      relative: r in the per-prediction bound r * max_j |z_j| (K * u by default; 0 when
        `absolute` is used or the mode is exact).
      absolute: a fixed bound in logits, used when > 0 (a user's ``margin_bound``).
    """

    relative: float = 0.0
    absolute: float = 0.0

    @property
    def active(self) -> bool:
        """False where nothing is ever re-evaluated (exact float32)."""
        return self.relative > 0 or self.absolute > 0

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """float32 [...] bounds for logits [..., classes]."""
        if self.absolute > 0:
            return torch.full(logits.shape[:-1], self.absolute, device=logits.device)
        return self.relative * logits.float().abs().amax(dim=-1)


def margin_bound_for(
    precision: str, device: torch.device, bound: float | None = None
) -> MarginBound:
    """The re-evaluation bound of a mode: ``BOUND_FACTOR * u`` relative to each prediction's
    largest |logit| (see the module docstring), or the absolute `bound` when given; inactive
    where the mode is exact float32 (``float32``, and ``tf32`` off CUDA).

    Raises:
      PrecisionError: an unknown mode or a negative `bound`.
    """
    check_precision(precision)
    if precision == "float32" or (precision == "tf32" and device.type != "cuda"):
        return MarginBound()
    if bound is not None:
        if bound < 0:
            raise PrecisionError(f"margin_bound must be >= 0 logits, got {bound}")
        return MarginBound(absolute=float(bound))
    return MarginBound(relative=BOUND_FACTOR * UNIT_ROUNDOFF[precision])


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


def close_calls(logits: torch.Tensor, bound: MarginBound) -> torch.Tensor:
    """bool [...]: the predictions of logits [..., classes] whose top-2 margin is below
    `bound` (all False when it is inactive)."""
    if not bound.active:
        return torch.zeros(logits.shape[:-1], dtype=torch.bool, device=logits.device)
    return top2_margin(logits) < bound(logits)


def reevaluate_close(
    logits: torch.Tensor,
    images: torch.Tensor,
    float32_fn: Callable[[torch.Tensor], torch.Tensor],
    bound: MarginBound,
) -> tuple[torch.Tensor, int]:
    """Replaces the rows of `logits` [b, classes] whose top-2 margin is below `bound` by
    ``float32_fn(images[rows])``; returns the float32 logits and how many rows were replaced."""
    logits = logits.float()
    rows = torch.nonzero(close_calls(logits, bound)).flatten()
    if len(rows):
        with torch.inference_mode():
            logits[rows] = float32_fn(images[rows]).float()
    return logits, int(len(rows))
