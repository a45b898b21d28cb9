"""LiRA scores with the runs as shadow models, leaving one run out (Carlini et al. 2022).

Source: N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership Inference
Attacks From First Principles", IEEE S&P 2022 (arXiv:2112.03570), and the conventions of its
two reference implementations in tensorflow/privacy: ``research/mi_lira_2021/plot.py`` and
``advanced_mia.compute_score_lira`` (privacy_tests/membership_inference_attack).

Inputs: ``statistic`` float [R, N] or [R, N, V], the per-run statistic of each example (in each
of V views, e.g. the identity and the mirrored image) -- the store's ``logit_confidence``,
``phi = log p_y - log sum_{y' != y} p_y'`` (the paper's logit-scaled confidence) --
and ``mask`` bool [R, N], the runs' training subsets. Each target run ``t`` in turn is attacked;
its shadow models are all the other runs. For target t and example i, IN = the other runs whose
subset holds i, OUT = the other runs whose subset does not. Per example and view, over the
shadows of one side (``advanced_mia.compute_score_lira``):

- location ``mu``: the median (default, both references) or the mean of the shadows' values;
- scale ``s``: their population standard deviation (ddof 0, about their mean);
- fixed variance: one scale per target and side instead, the standard deviation (ddof 0) of
  every ``value - mu[i, v]`` of that side pooled over examples, shadows and views;
- a location or scale that cannot be formed (no shadow on that side) is replaced by its mean
  over the examples where it can, per target, side and view;
- a Gaussian log-density uses ``s + 1e-30`` as its standard deviation.

Scores, higher meaning "member" (the references return the negative of some of these):

- ``online`` / ``online_fixed``: mean over views of
  ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)`` (the likelihood ratio of the paper's
  online attack, Algorithm 1, in log form);
- ``offline`` / ``offline_fixed``: mean over views of ``log Phi((phi - mu_out) / s_out)``, the
  paper's one-sided test (Eq. 4: ``Lambda = 1 - Pr[Z > phi], Z ~ N(mu_out, s_out^2)``), so an
  unusually *low* statistic scores as a non-member. Both reference implementations use the
  two-sided density ``-log N(phi; mu_out, s_out)`` here instead (tensorflow/privacy issue #598),
  which also flags an unusually low statistic as a member; this module implements Eq. 4 only;
- ``global``: mean over views of ``phi`` (the global-threshold baseline).

`plot.py` also keeps the same number of shadows for every example (the smallest count over the
examples) and pools the IN scale for its fixed-variance OUT side; `advanced_mia` does neither,
and neither does this module.

Scale: one sort per example and view of all R runs' values (IN values first, then OUT, each in
ascending order) gives, for every target at once, the leave-one-out median by index arithmetic
(the target's own value skipped), the mean and the sum of squared deviations by removing one
value (exact when what is left is constant), so R targets cost O(R N V log R), never R fits of
R - 1 shadows nor an [R, R, N] array. Examples are processed in chunks of bounded size, twice:
the first pass forms the means over examples (replacement) and the pooled scales, the second
the scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from heldout.errors import LiraError

VARIANTS = ("online", "online_fixed", "offline", "offline_fixed", "global")
LOCATIONS = ("median", "mean")
#: Added to every standard deviation in a Gaussian log-density (both references).
SIGMA_EPSILON = 1e-30
#: Elements of one float64 working array ([max(R, T), chunk, V]) per chunk of examples.
DEFAULT_CHUNK_ELEMENTS = 1 << 18
MIN_RUNS = 3

Progress = Callable[[Iterable], Iterable]
"""Wraps an iterable to report progress, e.g. ``functools.partial(tqdm.tqdm, desc="lira")``."""


@dataclasses.dataclass(frozen=True)
class LiraScores:
    """Every target run's scores (`lira_scores`).

    Attributes:
      scores: variant -> [T, N] scores (the dtype asked for), higher = member.
      member: bool [T, N], ``mask[targets]``: the ground truth.
      targets: int64 [T], the target runs' rows in the inputs, ascending.
      location: ``"median"`` or ``"mean"``.
      fixed_scale_in, fixed_scale_out: float64 [T], each target's pooled IN and OUT standard
        deviations (the fixed-variance scales, before ``+ 1e-30``).
    """

    scores: dict[str, np.ndarray]
    member: np.ndarray
    targets: np.ndarray
    location: str
    fixed_scale_in: np.ndarray
    fixed_scale_out: np.ndarray


def choose_targets(num_runs: int, num_targets: int, seed: int = 0) -> np.ndarray:
    """int64 [num_targets]: distinct rows in ``0 .. num_runs - 1``, ascending, drawn without
    replacement by ``numpy.random.default_rng(seed)``.

    Raises:
      LiraError: `num_targets` not in ``1 .. num_runs``.
    """
    if not 1 <= num_targets <= num_runs:
        raise LiraError(f"`num_targets`={num_targets}: choose between 1 and the {num_runs} runs")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_runs, size=num_targets, replace=False)).astype(np.int64)


def check_inputs(statistic, mask) -> tuple[np.ndarray, np.ndarray]:
    """The inputs as ``(statistic [R, N, V], mask bool [R, N])``, checked.

    Raises:
      LiraError: not a float statistic of 2 or 3 dimensions, a mask of another shape or not
        bool, fewer than 3 runs, or non-finite values (naming the first runs holding them).
    """
    statistic, mask = np.asarray(statistic), np.asarray(mask)
    if statistic.dtype.kind != "f" or statistic.ndim not in (2, 3):
        raise LiraError(f"statistic: expected a float array [R, N] or [R, N, V], found "
                        f"{statistic.dtype} {list(statistic.shape)}")
    if statistic.ndim == 2:
        statistic = statistic[:, :, None]
    if mask.dtype != bool or mask.shape != statistic.shape[:2]:
        raise LiraError(f"mask: expected bool [R, N] = {list(statistic.shape[:2])}, found "
                        f"{mask.dtype} {list(mask.shape)}")
    if statistic.shape[0] < MIN_RUNS:
        raise LiraError(f"{statistic.shape[0]} runs: LiRA needs at least {MIN_RUNS} (each "
                        "target's shadows are the other runs)")
    bad = ~np.isfinite(statistic).all(axis=(1, 2))
    if bad.any():
        raise LiraError(f"statistic: non-finite values in {int(bad.sum())} runs (rows "
                        f"{np.flatnonzero(bad)[:5].tolist()})")
    return statistic, mask


def lira_scores(
    statistic,
    mask,
    targets: Sequence[int] | np.ndarray | None = None,
    *,
    location: str = "median",
    variants: Sequence[str] = VARIANTS,
    dtype=np.float64,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    progress: Progress | None = None,
) -> LiraScores:
    """LiRA scores of each target run on every example, the other runs as shadows.

    Args:
      statistic: float [R, N] or [R, N, V] (float32 or float64; computed in float64), the
        statistic of each run on each example (and view), e.g. a store's ``logit_confidence``.
      mask: bool [R, N], run r's subset holds example i.
      targets: rows of the target runs (default all R), e.g. from `choose_targets`.
      location: ``"median"`` (default, as both references) or ``"mean"``.
      variants: the scores to compute, of `VARIANTS`.
      dtype: dtype of the returned scores (the computation is float64 throughout). A side
        with a single shadow has scale 0, hence a standard deviation of 1e-30 and scores of
        order 1e60 wherever the target's value differs from that shadow's: in float32 those
        are stored as +-inf (they rank first or last, as they should).
      chunk_elements: bound on the elements of one working array, ``max(R, T) * chunk * V``;
        the peak working memory is about 30 such float64 arrays (62 MiB by default, for any N;
        smaller chunks are no slower).
      progress: optional wrapper reporting progress over the chunks of examples (two passes).

    Returns:
      `LiraScores`.

    Raises:
      LiraError: bad inputs (see `check_inputs`), an unknown variant or location, a target row
        out of range or repeated, targets whose pairs are all members or all non-members, or a
        target none of whose shadows is on one side for any example (nothing to replace with).
    """
    x_all, mask = check_inputs(statistic, mask)
    r, n, v = x_all.shape
    if location not in LOCATIONS:
        raise LiraError(f"location must be one of {LOCATIONS}, got {location!r}")
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown or not variants:
        raise LiraError(f"variants: unknown {unknown}; choose from {list(VARIANTS)}")
    rows = np.arange(r) if targets is None else np.asarray(targets, np.int64).ravel()
    if len(rows) == 0 or rows.min() < 0 or rows.max() >= r or len(np.unique(rows)) != len(rows):
        raise LiraError(f"targets: expected distinct rows in 0..{r - 1}, got {rows[:5].tolist()}")
    rows = np.sort(rows)
    member = mask[rows]
    if member.all() or not member.any():
        every = bool(member.all())
        raise LiraError(f"the {len(rows)} target runs' masks hold {'every' if every else 'no'} "
                        f"example: no {'non-' if every else ''}member pairs, nothing to attack")
    chunk = max(1, chunk_elements // (max(r, len(rows)) * v))
    bounds = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    wrap = progress or (lambda it: it)

    # Pass 1: per target, side and view, the sums behind the replacement means; per target and
    # side, the sums of the pooled deviations (fixed variance).
    totals = _Totals.zeros(len(rows), v)
    for i0, i1 in wrap(bounds):
        totals.add(_Chunk(x_all[:, i0:i1], mask[:, i0:i1], rows, location))
    totals.check(rows)
    fill = totals.fill_values()
    scale_in, scale_out = totals.pooled_scales()

    scores = {name: np.empty((len(rows), n), dtype) for name in variants}
    for i0, i1 in wrap(bounds):
        c = _Chunk(x_all[:, i0:i1], mask[:, i0:i1], rows, location)
        for name, value in _chunk_scores(c, fill, scale_in, scale_out, variants).items():
            with np.errstate(over="ignore"):  # beyond float32's range: +-inf, as documented
                scores[name][:, i0:i1] = value
    return LiraScores(scores, member, rows, location, scale_in, scale_out)


@dataclasses.dataclass
class _Side:
    """One side (IN or OUT) of every target's shadows on a chunk of examples.

    count int64 [T, n, 1]; location, mean, m2 (sum of squared deviations from the mean), scale
    float64 [T, n, V], NaN where count is 0 (m2 0 there).
    """

    count: np.ndarray
    location: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @property
    def scale(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.m2 / self.count)


class _Sorted:
    """Every example's and view's R values in one arrangement: IN values ascending, then OUT
    values ascending; `take` reads them by (position, example, view)."""

    def __init__(self, x: np.ndarray, mask: np.ndarray):
        r, n, v = x.shape
        runs_last = np.ascontiguousarray(np.moveaxis(x, 0, -1))  # [n, V, R]
        self.base = (np.arange(n * v, dtype=np.int64) * r).reshape(1, n, v)
        column = self.base[0, :, :, None]  # [n, V, 1]: where each (example, view) starts
        order = np.argsort(runs_last, axis=-1)  # tied values are interchangeable
        held = np.take(np.ascontiguousarray(mask.T), order + (np.arange(n) * r)[:, None, None])
        # IN before OUT, each keeping its ascending order (a stable sort of the flags).
        order = np.take(order, np.argsort(~held, axis=-1, kind="stable") + column)
        self.values = np.take(runs_last, order + column).ravel()  # float64 [n * V * R]
        rank = np.empty(n * v * r, np.int64)
        rank[(order + column).ravel()] = np.tile(np.arange(r), n * v)
        self.rank = rank.reshape(n, v, r)  # position of each run in the arrangement

    def take(self, position: np.ndarray) -> np.ndarray:
        """float64 [K, n, V]: the values at `position` int [K, n, V] (positions outside
        0..R-1 read a neighbour's value: callers discard those)."""
        return np.take(self.values, position + self.base, mode="clip")


def _segment(arranged: _Sorted, start, count, removed, total, m2, mean, dropped,
             location) -> _Side:
    """Statistics of the sorted segments at positions ``start .. start + count - 1`` of
    `arranged` (per example and view) less, where `removed` >= 0, the element of that rank,
    whose value is `dropped`.

    `total`, `m2` and `mean` are those of the whole segment, `start` and `count` int
    [1 or K, n, 1], `removed` int [K, n, V] (-1: none). The median is taken by index
    arithmetic, the mean and m2 by removing one value; where what is left is constant, the
    mean is that value and m2 exactly 0 (so one shadow gives scale 0, as a direct computation
    does).
    """
    gone = removed >= 0
    left = count - gone
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_left = np.where(gone, (total - np.where(gone, dropped, 0.0)) / left, mean)
        m2_left = np.where(gone, m2 - (dropped - mean_left) * (dropped - mean), m2)
    m2_left = np.maximum(m2_left, 0.0)
    first = arranged.take(start + (gone & (removed == 0)))
    last = arranged.take(start + left - 1 + (gone & (removed < left)))
    constant = first == last
    mean_left = np.where(constant, first, mean_left)
    m2_left = np.where(constant, 0.0, m2_left)
    if location == "median":
        lo, hi = (left - 1) // 2, left // 2
        lo = lo + (gone & (lo >= removed))
        hi = hi + (gone & (hi >= removed))
        loc = 0.5 * (arranged.take(start + lo) + arranged.take(start + hi))
    else:
        loc = mean_left
    empty = left == 0  # [K, n, V], the same in every view
    return _Side(
        left[..., :1],
        np.where(empty, np.nan, loc),
        np.where(empty, np.nan, mean_left),
        np.where(empty, 0.0, m2_left),
    )


class _Chunk:
    """Leave-one-out IN and OUT statistics of every target on a chunk of examples.

    Attributes:
      phi: float64 [T, n, V], the targets' own values; member: bool [T, n];
      inside, outside: `_Side` of the targets' IN and OUT shadows.
    """

    def __init__(self, x, mask, rows, location):
        x = np.asarray(x, np.float64)  # [R, n, V]
        r = x.shape[0]
        arranged = _Sorted(x, mask)
        rank = np.moveaxis(arranged.rank[:, :, rows], -1, 0)  # [T, n, V]
        held = mask[:, :, None]
        n_in = mask.sum(axis=0)[None, :, None]  # [1, n, 1]
        self.phi = x[rows]
        self.member = mask[rows]
        full, parts = {}, {}
        for side, sel, start, count in ((True, held, 0 * n_in, n_in),
                                        (False, ~held, n_in, r - n_in)):
            total = np.where(sel, x, 0.0).sum(axis=0, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = total / count
            m2 = np.where(sel, (x - mean) ** 2, 0.0).sum(axis=0, keepdims=True)
            parts[side] = (start, count, total, m2, mean)
            full[side] = _segment(arranged, start, count, np.full((1,) + x.shape[1:], -1),
                                  total, m2, mean, 0.0, location)
        # Each target loses its own value from its own side (IN where it holds the example)
        # and sees the whole other side.
        own = self.member[:, :, None]
        start, count, total, m2, mean = (np.where(own, a, b) for a, b in
                                         zip(parts[True], parts[False], strict=True))
        loo = _segment(arranged, start, count, rank - start, total, m2, mean, self.phi,
                       location)
        fields = ("count", "location", "mean", "m2")
        sides = {side: _Side(*(np.where(own == side, getattr(loo, f), getattr(full[side], f))
                               for f in fields)) for side in (True, False)}
        self.inside, self.outside = sides[True], sides[False]


@dataclasses.dataclass
class _Totals:
    """Per-target sums over the chunks: of the locations and scales that could be formed
    (per side and view; for the replacement means) and of the pooled deviations (per side)."""

    sums: dict[str, np.ndarray]

    @classmethod
    def zeros(cls, t: int, v: int) -> _Totals:
        sums = {}
        for side in ("in", "out"):
            for key in ("location", "scale", "formed"):
                sums[f"{key}_{side}"] = np.zeros((t, v))
            for key in ("count", "dev", "dev2"):
                sums[f"{key}_{side}"] = np.zeros(t)
        return cls(sums)

    def add(self, c: _Chunk) -> None:
        for side, s in (("in", c.inside), ("out", c.outside)):
            formed = np.broadcast_to(s.count > 0, s.location.shape)
            self.sums[f"location_{side}"] += np.where(formed, s.location, 0.0).sum(axis=1)
            self.sums[f"scale_{side}"] += np.where(formed, s.scale, 0.0).sum(axis=1)
            self.sums[f"formed_{side}"] += formed.sum(axis=1)
            # Deviations from the location: sum = n (mean - loc), sum of squares
            # = m2 + n (mean - loc)^2; nothing where the side is empty.
            shift = np.where(formed, s.mean - s.location, 0.0)
            self.sums[f"count_{side}"] += (s.count * np.ones_like(shift)).sum(axis=(1, 2))
            self.sums[f"dev_{side}"] += (s.count * shift).sum(axis=(1, 2))
            self.sums[f"dev2_{side}"] += (s.m2 + s.count * shift**2).sum(axis=(1, 2))

    def check(self, rows: np.ndarray) -> None:
        for side, word in (("in", "holds"), ("out", "leaves out")):
            empty = (self.sums[f"formed_{side}"] == 0).any(axis=1)
            if empty.any():
                raise LiraError(
                    f"target rows {rows[empty][:5].tolist()}: no other run {word} any example, "
                    f"so no {side.upper()} shadow exists to model; LiRA needs shadows on both "
                    "sides")

    def fill_values(self) -> dict[str, np.ndarray]:
        """float64 [T, 1, V]: the replacement location and scale of each side."""
        return {f"{key}_{side}": (self.sums[f"{key}_{side}"]
                                  / self.sums[f"formed_{side}"])[:, None, :]
                for key in ("location", "scale") for side in ("in", "out")}

    def pooled_scales(self) -> tuple[np.ndarray, np.ndarray]:
        """float64 [T] each: the standard deviation (ddof 0) of all deviations of a side."""
        scales = []
        for side in ("in", "out"):
            count = self.sums[f"count_{side}"]
            mean = self.sums[f"dev_{side}"] / count
            scales.append(np.sqrt(np.maximum(self.sums[f"dev2_{side}"] / count - mean**2, 0.0)))
        return scales[0], scales[1]


def _log_normal(x, mu, sigma):
    """log N(x; mu, sigma) (sigma already includes the epsilon)."""
    z = (x - mu) / sigma
    return -0.5 * z * z - np.log(sigma) - 0.5 * np.log(2 * np.pi)


def _chunk_scores(c: _Chunk, fill, scale_in, scale_out, variants) -> dict[str, np.ndarray]:
    """Each variant's scores float64 [T, n] on one chunk."""
    # log Phi, accurate far into the lower tail; imported here, not with the module, so that
    # the CLI (which registers `heldout lira`) starts without scipy.
    from scipy.special import log_ndtr

    mu_in = np.where(np.isnan(c.inside.location), fill["location_in"], c.inside.location)
    mu_out = np.where(np.isnan(c.outside.location), fill["location_out"], c.outside.location)
    out: dict[str, np.ndarray] = {}
    if "online" in variants or "offline" in variants:
        s_in = np.where(c.inside.count > 0, c.inside.scale, fill["scale_in"]) + SIGMA_EPSILON
        s_out = np.where(c.outside.count > 0, c.outside.scale, fill["scale_out"]) + SIGMA_EPSILON
        if "online" in variants:
            out["online"] = (_log_normal(c.phi, mu_in, s_in)
                             - _log_normal(c.phi, mu_out, s_out)).mean(axis=-1)
        if "offline" in variants:
            out["offline"] = log_ndtr((c.phi - mu_out) / s_out).mean(axis=-1)
    f_in = scale_in[:, None, None] + SIGMA_EPSILON
    f_out = scale_out[:, None, None] + SIGMA_EPSILON
    if "online_fixed" in variants:
        out["online_fixed"] = (_log_normal(c.phi, mu_in, f_in)
                               - _log_normal(c.phi, mu_out, f_out)).mean(axis=-1)
    if "offline_fixed" in variants:
        out["offline_fixed"] = log_ndtr((c.phi - mu_out) / f_out).mean(axis=-1)
    if "global" in variants:
        out["global"] = c.phi.mean(axis=-1)
    return out
