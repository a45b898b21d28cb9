"""One subset ratio's estimates as `heldout estimate` writes them: `RatioEstimate` (.npz).

`estimate` computes memorization and (full, top-k or no) influence of an accumulator;
`save_estimate` / `load_estimate` write and read them, checking every key. The estimate carries
the runs' dataset fingerprint (``fingerprint__*`` keys, `heldout.data.fingerprint`) when they
had one, so `heldout pairs` can check the labels it is given, and, when it holds influence, the
product backend that formed its co-occurrence counts (``cooccurrence_backend``). See
`heldout.estimate`.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from heldout.data.fingerprint import Fingerprint, read_fingerprint
from heldout.errors import EstimateError, NpzError
from heldout.estimate.accumulator import Progress, RatioAccumulator, check_fingerprint_sizes
from heldout.estimate.pairwise import DEFAULT_WORKING_BYTES, influence, top_k_influence
from heldout.estimate.products import ProductBackend, product_backend
from heldout.estimate.scores import memorization
from heldout.npzio import load_npz, require, save_npz_atomic

INFLUENCE_KINDS = ("full", "topk", "none")
#: The outputs an influence can be of: correctness (the default), or a store's continuous output.
TARGETS = ("correct", "margin", "logit_confidence")


@dataclasses.dataclass(frozen=True)
class RatioEstimate:
    """Memorization and influence at one subset ratio (the `heldout estimate` file).

    Attributes:
      memorization, memorization_stderr: float64 [n_train] (see `Memorization`).
      count_in, count_out: int64 [n_train].
      num_runs: R.
      subset_ratio: the ratio (NaN when unknown).
      influence: float32 [n_test, n_train] or None.
      topk_index: int64 [n_test, k] or None; topk_influence: float32 [n_test, k] or None.
      test_correct_total: int64 [n_test], runs that classified each test example correctly
        (with the counts, what an influence's standard error needs:
        `heldout.estimate.influence_stderr_rows`), or None from a file written before it was
        recorded.
      fingerprint: the dataset fingerprint of the runs (`heldout.data.fingerprint`), or None
        when they had none (released runs).
      target: the output the influence is of: ``correct`` (the papers' definition, the
        default), or ``margin`` / ``logit_confidence`` (`heldout.attribution.output_influence`,
        in the output's units). Memorization is always of the correctness.
      influence_stderr: float32 [n_test, n_train] or None; topk_influence_stderr: float32
        [n_test, k] or None: Welch standard errors of a ``margin`` / ``logit_confidence``
        influence.
      cooccurrence_backend: how the influence's co-occurrence counts were formed
        (`ProductBackend.describe`: ``torch-int8-cpu``, ``torch-int8-cuda`` or
        ``numpy-float32``; the values are the same bit for bit); None without influence, or
        from a file written before it was recorded.
    """

    memorization: np.ndarray
    memorization_stderr: np.ndarray
    count_in: np.ndarray
    count_out: np.ndarray
    num_runs: int
    subset_ratio: float
    influence: np.ndarray | None = None
    topk_index: np.ndarray | None = None
    topk_influence: np.ndarray | None = None
    test_correct_total: np.ndarray | None = None
    fingerprint: Fingerprint | None = None
    target: str = "correct"
    influence_stderr: np.ndarray | None = None
    topk_influence_stderr: np.ndarray | None = None
    cooccurrence_backend: str | None = None

    def to_dict(self) -> dict[str, np.ndarray]:
        """The `.npz` arrays (see `save_estimate`)."""
        arrays = {
            "memorization": self.memorization,
            "memorization_stderr": self.memorization_stderr,
            "count_in": self.count_in,
            "count_out": self.count_out,
            "num_runs": np.array(self.num_runs, np.int64),
            "subset_ratio": np.array(self.subset_ratio, np.float64),
        }
        if self.target != "correct":  # a correctness estimate keeps the format it always had
            arrays["target"] = np.asarray(self.target)
        for key in ("influence", "topk_index", "topk_influence", "influence_stderr",
                    "topk_influence_stderr", "cooccurrence_backend"):
            if getattr(self, key) is not None:
                arrays[key] = np.asarray(getattr(self, key))
        if self.fingerprint is not None:
            arrays.update(self.fingerprint.to_arrays())
        if self.test_correct_total is not None:
            arrays["test_correct_total"] = self.test_correct_total
        return arrays


def estimate(
    acc: RatioAccumulator,
    influence_kind: str = "full",
    top_k: int = 10,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Progress | None = None,
    backend: str | ProductBackend = "auto",
    device: str = "cpu",
) -> RatioEstimate:
    """Memorization and (full, top-k or no) influence of one ratio's accumulator.

    Args:
      acc: the accumulator (with `keep_runs` unless `influence_kind` is ``"none"``).
      influence_kind: ``"full"``, ``"topk"`` or ``"none"``.
      top_k: k for ``"topk"``.
      working_bytes, progress, backend, device: see `influence`; the backend used is recorded
        in `RatioEstimate.cooccurrence_backend`.

    Raises:
      EstimateError: unknown kind, influence asked of a counts-only accumulator, or a backend
        that cannot be used (see `product_backend`).
    """
    if influence_kind not in INFLUENCE_KINDS:
        raise EstimateError(f"influence must be one of {INFLUENCE_KINDS}, got {influence_kind!r}")
    mem = memorization(acc)
    extra: dict = {}
    if influence_kind != "none":
        backend = product_backend(backend, device)
        extra["cooccurrence_backend"] = backend.describe()
    if influence_kind == "full":
        extra["influence"] = influence(acc, working_bytes=working_bytes, progress=progress,
                                       backend=backend)
    elif influence_kind == "topk":
        index, values = top_k_influence(acc, top_k, working_bytes, progress, backend)
        extra.update(topk_index=index, topk_influence=values)
    return RatioEstimate(
        mem.memorization,
        mem.stderr,
        mem.count_in,
        mem.count_out,
        acc.num_runs,
        acc.subset_ratio,
        **extra,
        fingerprint=acc.fingerprint,
        test_correct_total=acc.test_correct_total.copy(),
    )


def save_estimate(path: str | os.PathLike, est: RatioEstimate) -> None:
    """Writes a `RatioEstimate` to `.npz` atomically.

    Keys: its attributes (an absent influence, standard error or ``cooccurrence_backend`` is
    not written; ``cooccurrence_backend`` is a str scalar, and ``target`` one written only when
    not ``correct``) and, with a fingerprint, the ``fingerprint__*`` keys of
    `heldout.data.fingerprint.Fingerprint.to_arrays`. The arrays are written as they are,
    straight from their memory (`heldout.npzio.save_npz_atomic`), so the file costs no second
    copy of the influence.
    """
    save_npz_atomic(path, est.to_dict())


def load_estimate(path: str | os.PathLike,
                  arrays: dict[str, np.ndarray] | None = None) -> RatioEstimate:
    """Reads and checks a file written by `save_estimate` / `heldout estimate`.

    Args:
      path: the file.
      arrays: its arrays when the caller has read them already (`heldout.npzio.load_npz`), so
        that a full influence matrix (2.4 GB at 60,000 x 10,000) is not read twice.

    Raises:
      NpzError: unreadable file, missing key, or arrays of the wrong dtype or shape (the message
        names the file and key), or a fingerprint whose split sizes are not the file's.
      FingerprintError: incomplete or malformed ``fingerprint__*`` keys.
    """
    path = os.fspath(path)
    arrays = load_npz(path) if arrays is None else arrays
    sizes: dict[str, int] = {}
    get = functools.partial(require, arrays, source=path, sizes=sizes,
                            what="a `heldout estimate` file")

    mem = get("memorization", "f", ("n_train",))
    for key, kind in (("memorization_stderr", "f"), ("count_in", "iu"), ("count_out", "iu")):
        get(key, kind, ("n_train",))
    for key, kind in (("num_runs", "iu"), ("subset_ratio", "f")):
        get(key, kind, ())
    n_train = sizes["n_train"]
    extra: dict[str, np.ndarray] = {}
    if "influence" in arrays:
        extra["influence"] = get("influence", "f", ("n_test", "n_train"))
    if ("topk_index" in arrays) != ("topk_influence" in arrays):
        raise NpzError(f"{path}: keys 'topk_index' and 'topk_influence' come together")
    if "topk_index" in arrays:
        index = get("topk_index", "iu", ("n_test", "k"))
        values = get("topk_influence", "f", ("n_test", "k"))
        if ((index < -1) | (index >= n_train)).any():
            raise NpzError(f"{path}: key 'topk_index' holds positions outside -1..{n_train - 1}")
        extra.update(topk_index=index.astype(np.int64), topk_influence=values)
    for key, shape in (("influence_stderr", ("n_test", "n_train")),
                       ("topk_influence_stderr", ("n_test", "k"))):
        if key in arrays:
            extra[key] = get(key, "f", shape)
    target = str(get("target", "U", ())) if "target" in arrays else "correct"
    if target not in TARGETS:
        raise NpzError(f"{path}: key 'target': expected one of {list(TARGETS)}, found {target!r}")
    if "cooccurrence_backend" in arrays:
        extra["cooccurrence_backend"] = str(get("cooccurrence_backend", "U", ()))
    fingerprint = read_fingerprint(arrays, path)
    test_total = None
    if "test_correct_total" in arrays:
        test_total = get("test_correct_total", "iu", ("n_test",)).astype(np.int64)
        if ((test_total < 0) | (test_total > int(arrays["num_runs"]))).any():
            raise NpzError(f"{path}: key 'test_correct_total' holds counts outside "
                           f"0..{int(arrays['num_runs'])} (num_runs)")
    check_fingerprint_sizes(fingerprint, n_train, sizes.get("n_test"), path)
    return RatioEstimate(
        mem.astype(np.float64),
        arrays["memorization_stderr"].astype(np.float64),
        arrays["count_in"].astype(np.int64),
        arrays["count_out"].astype(np.int64),
        int(arrays["num_runs"]),
        float(arrays["subset_ratio"]),
        **extra,
        test_correct_total=test_total,
        fingerprint=fingerprint,
        target=target,
    )
