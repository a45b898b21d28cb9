"""Spearman rank correlations of many column pairs at once (numpy; p-values with scipy).

Spearman's rho of two samples is Pearson's correlation of their ranks, ties given the average
of the ranks they span (``scipy.stats.rankdata(method="average")``); its two-sided p-value is
that of Student's t with ``n - 2`` degrees of freedom, ``t = rho sqrt((n - 2) / ((1 + rho)
(1 - rho)))``, as `scipy.stats.spearmanr` computes it. A constant sample has no ranking, so its
correlation and p-value are NaN.
"""

from __future__ import annotations

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks along axis 0, 1 to n, ties given their average rank.

    Args:
      x: float [n, m]: m samples of n values each (no NaN).

    Returns:
      float64 [n, m]; column j equals ``scipy.stats.rankdata(x[:, j])``.
    """
    rows = np.ascontiguousarray(np.asarray(x).T)  # [m, n]: sort along contiguous memory
    m, n = rows.shape
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=1)
    position = np.broadcast_to(np.arange(n), (m, n))
    starts = np.ones((m, n), bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]  # a new value begins a group of ties
    ends = np.ones((m, n), bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((m, n), np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks.T


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray]:
    """Spearman's rho of each column pair ``(x[:, j], y[:, j])`` and its two-sided p-value.

    Args:
      x, y: float [n, m], no NaN; n >= 3 for a p-value (n = 2 gives NaN p-values).

    Returns:
      (rho, p_value, x_constant, y_constant): float64 [m], float64 [m], bool [m], bool [m];
      rho and p_value are NaN where a column of x or y is constant. Equal to
      ``scipy.stats.spearmanr(x[:, j], y[:, j])`` column by column.
    """
    from scipy.special import stdtr

    n = x.shape[0]
    rx = average_ranks(x) - (n + 1) / 2.0
    ry = average_ranks(y) - (n + 1) / 2.0
    sxx, syy = np.einsum("ij,ij->j", rx, rx), np.einsum("ij,ij->j", ry, ry)
    x_constant, y_constant = sxx == 0, syy == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.einsum("ij,ij->j", rx, ry) / np.sqrt(sxx * syy)
        rho = np.clip(rho, -1.0, 1.0)
        dof = n - 2
        t = rho * np.sqrt((dof / ((rho + 1.0) * (1.0 - rho))).clip(0))
        p_value = 2.0 * stdtr(dof, -np.abs(t)) if dof > 0 else np.full_like(rho, np.nan)
    undefined = x_constant | y_constant
    rho[undefined] = np.nan
    p_value[undefined] = np.nan
    return rho, np.minimum(p_value, 1.0), x_constant, y_constant
