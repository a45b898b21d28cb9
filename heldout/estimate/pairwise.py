"""Influence of training on test examples, tile by tile.

The full matrix (`influence`), its standard error, top-k lists per test example and
high-influence pairs (Feldman & Zhang 2020), all formed from an accumulator's bits with one
co-occurrence product per tile (`heldout.estimate.products`: exact int32 counts from int8
tiles through PyTorch, or float32 numpy) and a bounded working set (`DEFAULT_WORKING_BYTES`).
The float32 arithmetic after the counts is the same for every backend, so the results are
identical bit for bit. See `heldout.estimate`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from heldout.errors import EstimateError
from heldout.estimate import noise
from heldout.estimate.accumulator import Progress, RatioAccumulator, _unpack
from heldout.estimate.products import ProductBackend, cooccurrence, product_backend
from heldout.estimate.scores import memorization

DEFAULT_WORKING_BYTES = 512 * 2**20

#: Threads turning a tile's counts into influence (and top-k lists), each on its own rows:
#: numpy releases the GIL in its loops, and the product's threads are idle meanwhile.
_ROW_THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1)

RowsUpdate = Callable[[np.ndarray, int, int, int], None]
"""``update(rows, r, c0, s)``: work on the finished influence ``rows`` (a part of a tile, its
first row r of the matrix, its first column c0; s its first row in the tile)."""


@dataclasses.dataclass(frozen=True)
class _Tiler:
    """Forms influence tiles ``[rows, cols]`` from the bits with one co-occurrence product per
    tile (`cooccurrence`, with `backend`), then finishes parts of their rows on threads."""

    acc: RatioAccumulator
    backend: ProductBackend
    inv_in: np.ndarray  # float32 [n_train]: 1 / count_in (NaN where undefined)
    inv_out: np.ndarray  # float32 [n_train]: 1 / count_out (NaN where undefined)
    test_total: np.ndarray  # float32 [n_test]
    rows: int
    cols: int

    @staticmethod
    def make(acc: RatioAccumulator, working_bytes: int, full: bool,
             backend: str | ProductBackend = "auto") -> _Tiler:
        acc._require_runs("influence")
        if acc.num_runs == 0:
            raise EstimateError("influence needs at least one run")
        backend = product_backend(backend)
        cin, cout = acc.count_in, acc.count_out
        defined = (cin > 0) & (cout > 0)
        with np.errstate(divide="ignore"):
            inv_in = np.where(defined, 1.0 / cin, np.nan).astype(np.float32)
            inv_out = np.where(defined, 1.0 / cout, np.nan).astype(np.float32)
        runs, n_test, n_train = acc.num_runs, acc.num_test, acc.num_train
        budget = max(int(working_bytes), 0)
        size = backend.operand_dtype.itemsize * runs  # bytes of one unpacked column
        if full:
            # Output tiles are views of the result: the working set is the unpacked runs. The
            # int8 products are as fast in blocks of 2,048 rows, which the progress bar counts.
            rows = n_test if size * n_test <= budget // 2 else budget // 2 // size
            rows = min(rows, 2048) if backend.name == "torch" else rows
            rows = n_test if rows >= n_test else max(8, rows // 8 * 8)
            cols = budget // 2 // size
        else:
            # A tile plus about three tile-sized temporaries, and the unpacked runs.
            rows = min(1024, budget // 2**19)
            rows = n_test if rows >= n_test else max(8, rows // 8 * 8)
            cols = min(budget // 2 // size, budget // 2 // (16 * max(rows, 1)))
        cols = n_train if cols >= n_train else max(64, cols // 64 * 64)
        if full and backend.count_dtype != np.float32 and cols < n_train:
            # int32 counts of a tile that is not contiguous in the result go to a buffer.
            rows = min(rows, max(8, budget // 4 // (4 * cols) // 8 * 8))
        rows, cols = max(rows, 1), max(cols, 1)
        return _Tiler(acc, backend, inv_in, inv_out, acc.test_correct_total.astype(np.float32),
                      rows, cols)

    def col_blocks(self) -> list[tuple[int, int]]:
        n = self.acc.num_train
        return [(c, min(c + self.cols, n)) for c in range(0, n, self.cols)]

    def row_blocks(self) -> list[tuple[int, int]]:
        n = self.acc.num_test
        return [(r, min(r + self.rows, n)) for r in range(0, n, self.rows)]

    def tiles(
        self,
        progress: Progress | None = None,
        out: np.ndarray | None = None,
        update: RowsUpdate | None = None,
    ) -> Iterator[tuple[int, int, int, int, np.ndarray]]:
        """Yields ``(r0, r1, c0, c1, tile)``, tile float32 [r1 - r0, c1 - c0] of influence.

        The tile is a view of `out` when given, else a buffer reused for the next tile. Counts
        are formed in the tile's own memory (int32 counts where the tile is contiguous) and
        turned into influence in place, parts of the rows on `_ROW_THREADS` threads, each part
        then given to `update` on its thread (rows are independent, so the result does not
        depend on the split).
        """
        threads = _ROW_THREADS
        with ThreadPoolExecutor(threads) if threads > 1 else contextlib.nullcontext() as pool:
            yield from self._tiles(progress, out, update, pool, threads)

    def _tiles(self, progress, out, update, pool, threads):
        acc, dtype = self.acc, self.backend.operand_dtype
        rows = self.row_blocks()
        blocks = [(c, r) for c in self.col_blocks() for r in rows]
        buffer = np.empty(self.rows * self.cols, np.float32) if out is None else None
        count_buffer = None
        m_buffer = np.empty(acc.num_runs * min(self.cols, acc.num_train), dtype)
        if len(rows) == 1:
            t_all, t_buffer = _unpack(acc.test_bits, 0, acc.num_test, dtype=dtype), None
        else:
            t_all, t_buffer = None, np.empty(acc.num_runs * self.rows, dtype)
        m_block, m_key = None, None
        for (c0, c1), (r0, r1) in progress(blocks) if progress else blocks:
            if m_key != (c0, c1):
                m_block, m_key = _unpack(acc.mask_bits, c0, c1, m_buffer), (c0, c1)
            t_block = t_all if t_all is not None else _unpack(acc.test_bits, r0, r1, t_buffer)
            if out is None:
                tile = buffer[: (r1 - r0) * (c1 - c0)].reshape(r1 - r0, c1 - c0)
            else:
                tile = out[r0:r1, c0:c1]
            if self.backend.count_dtype == np.float32:
                counts = tile
            elif tile.flags.c_contiguous:
                counts = tile.view(self.backend.count_dtype)
            else:
                if count_buffer is None:
                    count_buffer = np.empty(self.rows * self.cols, self.backend.count_dtype)
                counts = count_buffer[: tile.size].reshape(tile.shape)
            cooccurrence(t_block, m_block, self.backend, out=counts)

            def part(s0: int, s1: int, counts=counts, tile=tile, r0=r0, c0=c0, c1=c1) -> None:
                self.finish(counts[s0:s1], tile[s0:s1], r0 + s0, c0, c1)
                if update is not None:
                    update(tile[s0:s1], r0 + s0, c0, s0)

            # Parts of at least 64 rows (or the whole tile), one per thread.
            bounds = np.linspace(0, r1 - r0, min(threads, max(1, (r1 - r0) // 64)) + 1)
            bounds = bounds.astype(int).tolist()
            if pool is None or len(bounds) == 2:
                part(0, r1 - r0)
            else:
                parts = zip(bounds[:-1], bounds[1:], strict=True)
                for future in [pool.submit(part, a, b) for a, b in parts]:
                    future.result()
            yield r0, r1, c0, c1, tile

    def finish(self, counts: np.ndarray, tile: np.ndarray, r0: int, c0: int, c1: int) -> None:
        """Turns co-occurrence counts ``T^T M`` into influence in `tile`, in cache-sized chunks.

        ``influence = cooc / count_in - (total - cooc) / count_out``: the "without" sums come
        from the totals; each term is in [0, 1], so the float32 error stays within a few ulp.
        `counts` is float32 counts in `tile` itself (done in place) or int32 counts, which may
        share the tile's memory: each chunk is converted to float32 (exactly, counts < 2**24)
        before the tile's chunk is written, and the float32 operations are the same either way.
        """
        inv_in, inv_out = self.inv_in[c0:c1], self.inv_out[c0:c1]
        step = max(1, 2**18 // max(c1 - c0, 1))
        tmp = np.empty((step, c1 - c0), np.float32)
        in_place = counts.dtype == np.float32  # the numpy backend's counts are the tile
        converted = None if in_place else np.empty((step, c1 - c0), np.float32)
        for s in range(0, tile.shape[0], step):
            chunk = tile[s : s + step]
            n = chunk.shape[0]
            if converted is None:
                c = chunk
            else:
                c = converted[:n]
                np.copyto(c, counts[s : s + n], casting="unsafe")
            t = tmp[:n]
            np.subtract(self.test_total[r0 + s : r0 + s + n, None], c, out=t)
            np.multiply(t, inv_out, out=t)
            np.multiply(c, inv_in, out=c)
            np.subtract(c, t, out=chunk)


def influence(
    acc: RatioAccumulator,
    out: np.ndarray | None = None,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Progress | None = None,
    backend: str | ProductBackend = "auto",
    device: str = "cpu",
) -> np.ndarray:
    """The full influence matrix (Feldman & Zhang 2020, subsampled influence estimator).

    Computed from the co-occurrence counts ``T^T M`` over the kept runs (`cooccurrence`), tile
    by tile straight into the result, then ``cooc / count_in - (total - cooc) / count_out`` in
    place.

    Args:
      acc: an accumulator with `keep_runs`.
      out: optional float32 C-contiguous [n_test, n_train] array to write into.
      working_bytes: bound on the memory used besides the result.
      progress: optional wrapper reporting progress over the tiles.
      backend, device: how the co-occurrence counts are formed (`product_backend`:
        ``"auto"``, ``"torch"`` or ``"numpy"``; ``"cpu"`` or ``"cuda"``); every choice gives
        the same result, bit for bit.

    Returns:
      influence: float32 [n_test, n_train]; column i is NaN where ``count_in[i]`` or
      ``count_out[i]`` is 0.

    Raises:
      EstimateError: the accumulator keeps no runs, `out` has the wrong shape/dtype, or the
        backend cannot be used (see `product_backend`).
    """
    tiler = _Tiler.make(acc, working_bytes, full=True, backend=product_backend(backend, device))
    shape = (acc.num_test, acc.num_train)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise EstimateError(
            f"out must be a C-contiguous float32 array of shape {shape}, found {out.dtype} "
            f"{out.shape}"
        )
    for _ in tiler.tiles(progress, out):
        pass
    return out


def influence_stderr(acc: RatioAccumulator, backend: str | ProductBackend = "auto",
                     device: str = "cpu") -> np.ndarray:
    """float32 [n_test, n_train]: binomial standard error of `influence`.

    ``sqrt(q_in (1 - q_in) / count_in + q_out (1 - q_out) / count_out)`` with the observed test
    accuracies with / without training example i; NaN where undefined. Materialises the full
    matrix (meant for small experiments and tests). `backend`, `device`: as `influence`.
    """
    acc._require_runs("influence_stderr")
    backend = product_backend(backend, device)
    dtype = backend.operand_dtype
    cooc = cooccurrence(_unpack(acc.test_bits, 0, acc.num_test, dtype=dtype),
                        _unpack(acc.mask_bits, 0, acc.num_train, dtype=dtype), backend)
    cin, cout = acc.count_in[None, :], acc.count_out[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        q_in = cooc / cin
        q_out = (acc.test_correct_total[:, None] - cooc) / cout
    return _difference_stderr(q_in, q_out, cin, cout).astype(np.float32)


def _difference_stderr(q_in, q_out, cin, cout) -> np.ndarray:
    """Binomial standard error of ``q_in - q_out`` (broadcast shape), NaN where a count is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        var = q_in * (1 - q_in) / cin + q_out * (1 - q_out) / cout
        return np.where((cin > 0) & (cout > 0), np.sqrt(var), np.nan)


def influence_stderr_rows(influence_rows: np.ndarray, test_correct_total: np.ndarray,
                          count_in: np.ndarray, count_out: np.ndarray) -> np.ndarray:
    """Binomial standard errors of some rows of the influence matrix, float64 [rows, n_train].

    With q_in / q_out the test example's accuracy over the runs with / without training
    example i, influence = q_in - q_out and its standard error is
    ``sqrt(q_in (1 - q_in) / count_in + q_out (1 - q_out) / count_out)`` (as
    `heldout.estimate.influence_stderr`, which builds the whole matrix). q_in and q_out follow
    from the influence d and the test example's correct count T over all R runs
    (`heldout.estimate.noise.influence_correct_counts`: ``q_in = (T + d count_out) / R`` and
    ``q_out = q_in - d``, rounded to the counts they are made of). NaN where undefined.

    Any entries of the matrix work too: the inputs broadcast against each other, except that a
    1-D `test_correct_total` with 2-D `influence_rows` gives each row's (top-k lists: counts
    ``count_in[topk_index]``; pairs: all four 1-D, one entry per pair).

    Args:
      influence_rows: float [rows, n_train], rows j of the influence matrix.
      test_correct_total: int [rows], the runs that classified test example j correctly.
      count_in, count_out: int [n_train], runs with / without training example i.
    """
    d = np.asarray(influence_rows, np.float64)
    cin = np.asarray(count_in, np.float64)
    cout = np.asarray(count_out, np.float64)
    total = np.asarray(test_correct_total, np.float64)
    total = total[:, None] if d.ndim == 2 and total.ndim == 1 else total
    correct_in, correct_out = noise.influence_correct_counts(d, total, cin, cout)
    with np.errstate(divide="ignore", invalid="ignore"):
        q_in = np.clip(correct_in / cin, 0.0, 1.0)
        q_out = np.clip(correct_out / cout, 0.0, 1.0)
    return _difference_stderr(q_in, q_out, cin, cout)


def _topk_update(
    vals: np.ndarray,
    idx: np.ndarray,
    tile: np.ndarray,
    col0: int,
    k: int,
    scratch: np.ndarray,
) -> None:
    """Merges a tile into running top-k lists (rows: value descending, then index ascending).

    `vals` float32 [rows, k] (sorted, -inf padding) and `idx` int64 [rows, k] are updated in
    place; `tile` holds -inf where the influence is undefined; `scratch` is a float32 buffer of
    at least the tile's size.
    """
    rows, width = tile.shape
    cand = tile > vals[:, -1:]  # ties with kept entries lose: those have smaller indices
    if width > k and np.count_nonzero(cand) > 4 * k * rows:
        # Many candidates (first tiles): keep only those within the tile's own top k.
        part = scratch[: tile.size].reshape(tile.shape)
        np.copyto(part, tile)
        part.partition(width - k, axis=1)
        cand &= tile >= part[:, width - k, None]
    r, c = np.nonzero(cand)
    if r.size == 0:
        return
    all_r = np.concatenate([np.repeat(np.arange(rows), k), r])
    all_v = np.concatenate([vals.ravel(), tile[r, c]])
    all_i = np.concatenate([idx.ravel(), c.astype(np.int64) + col0])
    order = np.lexsort((all_i, -all_v, all_r))
    starts = np.searchsorted(all_r[order], np.arange(rows))
    take = order[starts[:, None] + np.arange(k)]
    vals[...] = all_v[take]
    idx[...] = all_i[take]


def top_k_influence(
    acc: RatioAccumulator,
    k: int,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Progress | None = None,
    backend: str | ProductBackend = "auto",
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The k training examples of largest influence on each test example, without the matrix.

    Tiles of the influence matrix are formed (one co-occurrence product each, bounded working
    set) and merged into running top-k lists, so the memory is O(n_test * k) plus the working
    set: the ImageNet matrix (50,000 x 1,281,167) is never materialised.

    Args:
      acc: an accumulator with `keep_runs`.
      k: entries per test example (1 <= k).
      working_bytes: bound on the working set.
      progress: optional wrapper reporting progress over the tiles.
      backend, device: how the co-occurrence counts are formed (`product_backend`:
        ``"auto"``, ``"torch"`` or ``"numpy"``; ``"cpu"`` or ``"cuda"``); every choice gives
        the same result, bit for bit.

    Returns:
      (index, influence): int64 [n_test, k] training-example positions and float32
      [n_test, k] their influence, sorted by influence descending (ties: smaller index first).
      Undefined influence (NaN) is never ranked; rows with fewer than k defined entries are
      padded with index -1 and NaN.

    Raises:
      EstimateError: k < 1, the accumulator keeps no runs, or the backend cannot be used.
    """
    if k < 1:
        raise EstimateError(f"k must be >= 1, got {k}")
    k = int(k)
    tiler = _Tiler.make(acc, working_bytes, full=False, backend=product_backend(backend, device))
    vals = np.full((acc.num_test, k), -np.inf, np.float32)
    idx = np.full((acc.num_test, k), -1, np.int64)
    undefined = np.flatnonzero(np.isnan(tiler.inv_in))
    scratch = np.empty(tiler.rows * tiler.cols, np.float32)

    def update(rows: np.ndarray, r: int, c0: int, s: int) -> None:
        cols = undefined[(undefined >= c0) & (undefined < c0 + rows.shape[1])] - c0
        rows[:, cols] = -np.inf
        n = rows.shape[0]
        part_scratch = scratch[s * rows.shape[1] : (s + n) * rows.shape[1]]
        _topk_update(vals[r : r + n], idx[r : r + n], rows, c0, k, part_scratch)

    for _ in tiler.tiles(progress, update=update):
        pass
    missing = np.isneginf(vals)
    vals[missing] = np.nan
    idx[missing] = -1
    return idx, vals


# --------------------------------------------------------------------------------------------
# High-influence pairs.


@dataclasses.dataclass(frozen=True)
class HighInfluencePairs:
    """High-influence (train, test) pairs, in the authors' published format.

    Attributes:
      tr_idx: int64 [p], training-example positions.
      tt_idx: int64 [p], test-example positions.
      infl: float64 [p], influence of the training on the test example.
      mem: float64 [p], memorization of the training example.
    """

    tr_idx: np.ndarray
    tt_idx: np.ndarray
    infl: np.ndarray
    mem: np.ndarray

    def __len__(self) -> int:
        return len(self.tr_idx)

    def to_dict(self) -> dict[str, np.ndarray]:
        """The arrays under the published keys ``tr_idx``, ``tt_idx``, ``infl``, ``mem``."""
        return {"tr_idx": self.tr_idx, "tt_idx": self.tt_idx, "infl": self.infl, "mem": self.mem}


def _pairs_inputs(
    mem: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_test, n_train = shape
    mem = np.asarray(mem, np.float64)
    ytr, yte = np.asarray(train_labels), np.asarray(test_labels)
    for name, value, n in (
        ("mem", mem, n_train),
        ("train_labels", ytr, n_train),
        ("test_labels", yte, n_test),
    ):
        if value.shape != (n,):
            raise EstimateError(f"{name} must have shape ({n},), found {value.shape}")
    return mem, ytr, yte


def _select(tile, r0, c0, mem, ytr, yte, infl_threshold, mem_threshold):
    r, c = np.nonzero(tile >= infl_threshold)
    i, j = c + c0, r + r0
    keep = (mem[i] >= mem_threshold) & (ytr[i] == yte[j])
    return i[keep], j[keep], tile[r[keep], c[keep]]


def _make_pairs(parts: list, mem: np.ndarray) -> HighInfluencePairs:
    if parts:
        tr, tt, infl = (np.concatenate(p) for p in zip(*parts, strict=True))
    else:
        tr, tt, infl = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    tr, tt = tr.astype(np.int64), tt.astype(np.int64)
    order = np.lexsort((tt, tr))
    tr, tt = tr[order], tt[order]
    return HighInfluencePairs(tr, tt, np.asarray(infl, np.float64)[order], mem[tr])


def select_high_influence_pairs(
    infl: np.ndarray,
    mem: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    infl_threshold: float = noise.INFLUENCE_THRESHOLD,
    mem_threshold: float = noise.MEMORIZATION_THRESHOLD,
) -> HighInfluencePairs:
    """High-influence pairs from a full influence matrix (Feldman & Zhang 2020).

    Pairs (i, j) with ``infl[j, i] >= infl_threshold``, ``mem[i] >= mem_threshold`` and
    ``train_labels[i] == test_labels[j]``; NaN never qualifies.

    Args:
      infl: float [n_test, n_train], the influence matrix.
      mem: float [n_train], memorization.
      train_labels: int [n_train]; test_labels: int [n_test].
      infl_threshold, mem_threshold: the thresholds (the paper's 0.15 and 0.25 by default).

    Returns:
      `HighInfluencePairs`, sorted by training then test index.

    Raises:
      EstimateError: shapes that do not fit.
    """
    infl = np.asarray(infl)
    if infl.ndim != 2:
        raise EstimateError(f"infl must be 2-D [n_test, n_train], found shape {infl.shape}")
    mem, ytr, yte = _pairs_inputs(mem, train_labels, test_labels, infl.shape)
    step = max(1, 2**22 // max(infl.shape[1], 1))
    parts = [
        _select(infl[r0 : r0 + step], r0, 0, mem, ytr, yte, infl_threshold, mem_threshold)
        for r0 in range(0, infl.shape[0], step)
    ]
    return _make_pairs(parts, mem)


def high_influence_pairs(
    acc: RatioAccumulator,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    infl_threshold: float = noise.INFLUENCE_THRESHOLD,
    mem_threshold: float = noise.MEMORIZATION_THRESHOLD,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Progress | None = None,
    backend: str | ProductBackend = "auto",
    device: str = "cpu",
) -> HighInfluencePairs:
    """High-influence pairs straight from an accumulator, tile by tile (no full matrix).

    Same selection as `select_high_influence_pairs`, with the memorization of `acc`;
    `backend`, `device` as `influence`.
    """
    tiler = _Tiler.make(acc, working_bytes, full=False, backend=product_backend(backend, device))
    mem, ytr, yte = _pairs_inputs(
        memorization(acc).memorization, train_labels, test_labels, (acc.num_test, acc.num_train)
    )
    parts = [
        _select(tile, r0, c0, mem, ytr, yte, infl_threshold, mem_threshold)
        for r0, _, c0, _, tile in tiler.tiles(progress)
    ]
    return _make_pairs(parts, mem)


def pairs_from_top_k(
    topk_index: np.ndarray,
    topk_influence: np.ndarray,
    mem: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    infl_threshold: float = noise.INFLUENCE_THRESHOLD,
    mem_threshold: float = noise.MEMORIZATION_THRESHOLD,
) -> HighInfluencePairs:
    """High-influence pairs from top-k lists, refusing when the lists may have cut some off.

    Args:
      topk_index, topk_influence: [n_test, k] from `top_k_influence`.
      mem: float [n_train]; train_labels: [n_train]; test_labels: [n_test].

    Raises:
      EstimateError: a test example's k-th influence is at or above `infl_threshold` while it
        may have more qualifying training examples (k is too small for the threshold).
    """
    topk_index, topk_influence = np.asarray(topk_index), np.asarray(topk_influence)
    if topk_index.shape != topk_influence.shape or topk_index.ndim != 2:
        raise EstimateError(
            f"topk_index {topk_index.shape} and topk_influence {topk_influence.shape} must be "
            "equal 2-D shapes [n_test, k]"
        )
    n_test, k = topk_index.shape
    mem, ytr, yte = _pairs_inputs(mem, train_labels, test_labels, (n_test, len(np.asarray(mem))))
    n_train = len(mem)
    last = topk_influence[:, -1]
    cut = (~np.isnan(last)) & (last >= infl_threshold) & (k < n_train)
    if cut.any():
        raise EstimateError(
            f"{int(cut.sum())} test example(s) have all {k} top-k influences >= "
            f"{infl_threshold}, so pairs may be missing; estimate again with a larger top-k "
            "or with full influence"
        )
    r, c = np.nonzero(topk_influence >= infl_threshold)
    i, j = topk_index[r, c], r
    keep = (mem[i] >= mem_threshold) & (ytr[i] == yte[j])
    return _make_pairs([(i[keep], j[keep], topk_influence[r[keep], c[keep]])], mem)
