"""Numbers as the report, its figures, the MNIST example and the CLI summaries print them.

`fmt` prints a number ("undefined" for NaN, never 0; no sign on a value that rounds to 0, so
``-0.00`` never reads as a negative estimate). `fmt_binomial` prints a binomial estimate (a
proportion, a difference of two proportions, or a mean of proportions over subset ratios)
with its standard error, ``0.7500 ± 0.0433``, except where the standard error is 0 at the
printed precision (every proportion at 0 or 1, or below the last digit): a zero standard
error would claim certainty that a finite number of runs cannot give, so the counts the
estimate is made of are printed instead, ``1.0000 = 120/120``, ``1.0000 = 28/28 − 0/12`` or
``0.5000 = (12/12 + 0/4)/2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MINUS = "\u2212"


def fmt(value: float | None, digits: int = 4) -> str:
    """A number: "undefined" for None or NaN (never 0); a value that rounds to zero has no
    sign (``0.00``, not ``-0.00``)."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return "undefined"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _count(value: float) -> str:
    return str(int(round(float(value))))


def fmt_binomial(value: float, stderr: float | None, successes: Sequence[float] = (),
                 trials: Sequence[float] = (), digits: int = 4,
                 difference: bool = False) -> str:
    """A binomial estimate with its uncertainty (module docstring).

    Args:
      value: the estimate (NaN: "undefined").
      stderr: its binomial standard error; None when unknown (a published file): the value
        alone is printed.
      successes, trials: the counts of the proportions the estimate is made of: one of each
        for a proportion; (in, out) with `difference` (memorization, influence:
        ``successes[0] / trials[0] - successes[1] / trials[1]``); one per subset ratio for a
        mean over ratios (C-scores; ratios with no trials are left out, as the mean leaves
        them out).
      digits: decimals of the value and the standard error.
      difference: the estimate is the difference of two proportions.

    Returns:
      ``"0.7500 ± 0.0433"``; where the standard error prints as zero, the counts:
      ``"1.0000 = 120/120"``, ``"1.0000 = 28/28 − 0/12"``, ``"0.5000 = (12/12 + 0/4)/2"``.

      With no counts (a file without them) a zero standard error is left out: the value
      alone.
    """
    text = fmt(value, digits)
    if text == "undefined" or stderr is None:
        return text
    error = fmt(stderr, digits)
    if error != "undefined" and float(error) > 0:
        return f"{text} ± {error}"
    terms = [f"{_count(k)}/{_count(n)}" for k, n in zip(successes, trials, strict=True)
             if not math.isnan(float(n)) and float(n) > 0]
    if not terms:
        return text
    if difference:
        counts = f" {MINUS} ".join(terms)
    elif len(terms) == 1:
        counts = terms[0]
    else:
        counts = f"({' + '.join(terms)})/{len(terms)}"
    return f"{text} = {counts}"


def fmt_rate(value: float, digits: int = 4) -> str:
    """A rate that may not be resolvable (a TPR at an FPR below 1 / the non-member pairs):
    "n/a" for NaN, as `heldout lira` prints it."""
    return "n/a" if math.isnan(float(value)) else f"{float(value):.{digits}f}"


def fmt_p(value: float) -> str:
    """A p-value: ``p = 0.031``, ``p < 1e-4`` below that, "p undefined" for NaN."""
    value = float(value)
    if math.isnan(value):
        return "p undefined"
    return "p < 1e-4" if value < 1e-4 else f"p = {value:.2g}"
