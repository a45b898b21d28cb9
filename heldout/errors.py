"""Every exception of heldout, in one place (as scikit-learn keeps ``sklearn.exceptions``).

Every failure caused by the input (a file, an argument, a dataset) is a `HeldoutError`, so
callers and the CLI can tell it from a bug; most also subclass `ValueError` (a `KeyError` for a
name the input lacks), as they did before this base existed, so existing ``except ValueError``
blocks keep working. Then one class per kind of input, in sections by concept; each is also
importable from the module that raises it (``from heldout.experiment import LayoutError``).
And `Interrupted`: Ctrl-C, with how far resumable work got.

Messages name what is wrong in the caller's terms: the file, the key, and the Python parameter,
in backticks (```workers`=3: only 2 GPUs are visible``); `heldout.cli` writes the command's flag
for a parameter that is one (``--workers=3``). Nothing here imports from heldout: this is the
bottom layer (`lint-imports`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

# --- The bases ------------------------------------------------------------------------------


class HeldoutError(Exception):
    """Bad input to heldout: the message says which file or argument, what was expected and
    what was found."""


class InputError(HeldoutError, ValueError):
    """A bad argument (a value out of range, a malformed name or address)."""


class NotFoundError(HeldoutError, KeyError):
    """A name the input does not have (a split, a subset ratio, an experiment): also a
    `KeyError`, so ``except KeyError`` keeps working; the message is not quoted."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- Files and the release layout (`heldout.npzio`, `heldout.experiment`) -------------------


class NpzError(HeldoutError, ValueError):
    """A `.npz` file is unreadable, incomplete or holds arrays of the wrong kind: a run's
    ``aux_arrays.npz`` or ``outputs.npz``, an estimate, a score file of the authors
    (`heldout.published`), ... The message names the file, the key, what was expected and what
    was found."""


class LayoutError(HeldoutError, ValueError):
    """An experiment directory or run does not follow the release layout."""


class NoRunsError(LayoutError):
    """`heldout.experiment.select_runs` found no run to use. `lacking`: the runs
    (`heldout.experiment.Run`) that matched the ratios and run ids but lack the requirement
    (empty when none matched)."""

    def __init__(self, message: str, lacking: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.lacking = tuple(lacking)


# --- Datasets (`heldout.data`) --------------------------------------------------------------


class DatasetError(HeldoutError, ValueError):
    """A dataset that cannot be used as asked: a missing split, a bad size, bad pixels, or
    TFRecord shards (`heldout.data.imagenet`) missing, incomplete or without the expected
    features."""


class DatasetSplitError(DatasetError, NotFoundError):
    """The dataset has no such split."""


class FingerprintError(HeldoutError, ValueError):
    """Outputs computed on different datasets or orders, or a malformed fingerprint."""


class OrderError(HeldoutError, ValueError):
    """Ids that do not give a permutation, or scores whose labels disagree with the dataset."""


class PreprocessingError(HeldoutError, ValueError):
    """A recorded preprocessing that cannot be read, or images it cannot be applied to."""


class ViewError(InputError):
    """A view name outside the grammar of `heldout.data.views`, a repeated view, or a shift
    that does not fit the images."""


class IdxError(HeldoutError, ValueError):
    """An IDX file is missing, truncated, or not in the IDX format."""


class BuildError(HeldoutError, ValueError):
    """The inputs of an ImageNet build are unusable (bad mapping, directories, or a conflicting
    build)."""


# --- Models, checkpoints and evaluation (`heldout.models`, `.checkpoint`, `.evaluate`) -------


class ArchitectureError(HeldoutError, ValueError):
    """An unknown architecture, or no default architecture for a dataset."""


class CheckpointError(HeldoutError, ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


class NonFiniteError(HeldoutError, ValueError):
    """A restored model holds a NaN or infinite weight, or gives NaN or infinite logits: the
    run diverged or its files are corrupt, so any prediction of it would be wrong (``argmax``
    of NaN logits is class 0; TensorFlow's max-pool drops NaN on the CPU, so a NaN weight can
    even give finite, wrong logits). The run is failed, never counted."""


class NonFiniteWeightsError(NonFiniteError):
    """A restored weight or batch-norm moving statistic is NaN or infinite (checked once per
    restore, by `heldout.models.weights.check_finite_weights`)."""


class NonFiniteLogitsError(NonFiniteError):
    """A model gave NaN or infinite logits (checked by
    `heldout.evaluate.check_finite_logits`)."""


class BackendError(HeldoutError, ValueError):
    """An unknown backend, a backend that is not installed, or logits asked of a backend
    before a restore succeeded (none yet, or the last one failed)."""


class ModelMismatchError(HeldoutError, ValueError):
    """A run's model (its checkpoint, or its exported file) is not the one a dataset needs:
    another architecture, number of classes or input size."""


class EvaluationError(HeldoutError, ValueError):
    """A dataset whose batches do not cover a split exactly once (an example missing, repeated
    or outside the split) or disagree with its labels, or a model whose logits are not
    [b, C]."""


# --- Predictions stores (`heldout.predict`) -------------------------------------------------


class StoreError(HeldoutError, ValueError):
    """A store that does not fit the command (another dataset, split, outputs, experiment), a
    path that is not a store, or a malformed store."""


class PredictError(HeldoutError, ValueError):
    """Inputs to `heldout.predict.predict` that do not fit: a bad `out`, outputs or backend,
    runs without readable aux arrays, a dataset that is not the runs', a store another command
    is filling, or a `source` that recorded outputs cannot serve (another backend, view or
    evaluation set, no dataset fingerprint, a prediction outside the dataset's classes). No
    runs selected is a `NoRunsError`, an unreachable scheduler a `ClusterError`, a malformed
    ``outputs.npz`` an `NpzError`."""


# --- Scores (`heldout.estimate`) ------------------------------------------------------------


class EstimateError(HeldoutError, ValueError):
    """Inputs to an estimator do not fit together (shapes, sizes, missing runs)."""


# --- Training (`heldout.train`) -------------------------------------------------------------


class TrainError(HeldoutError, ValueError):
    """Training cannot start: a bad configuration, or an experiment directory in the way."""


class DivergedError(TrainError):
    """A run's training loss (or its weights) became NaN or infinite: the run is stopped and
    not written, since its predictions would be meaningless (lower the learning rate)."""


# --- Exported models (`heldout.export`, `heldout.pytorch`) ----------------------------------


class ExportError(HeldoutError, ValueError):
    """An export that cannot be done: bad format, output inside the experiment, ..."""


class TensorFileError(HeldoutError, ValueError):
    """A tensor file is missing, unreadable, or its tensors or metadata are not what is expected."""


class PrecisionError(HeldoutError, ValueError):
    """An unknown precision mode, or a negative margin bound."""


# --- Membership inference, attribution, reports (`.privacy`, `.attribution`, `.report`) -----


class LiraError(HeldoutError, ValueError):
    """Inputs to the attack that do not fit (shapes, dtypes, too few runs, nothing to attack)."""


class MetricsError(HeldoutError, ValueError):
    """Scores and membership that cannot be evaluated (shapes, NaN, one class only)."""


class AttributionError(HeldoutError, ValueError):
    """Bad input to an attribution estimator: arrays of the wrong shape or dtype, non-finite
    outputs, or too few runs for what was asked."""


class ReportError(HeldoutError, ValueError):
    """Inputs of a report that do not fit together (sizes, runs, files of another experiment):
    a LiRA file of other runs, another dataset or another size than the experiment's, or a
    predictions store that is unreadable, malformed or of other data."""


# --- Getting the release (`heldout.release`) ------------------------------------------------


class DownloadError(HeldoutError):
    """The archive could not be fetched: HTTP error, server misbehaviour, retries exhausted."""


class ChecksumError(DownloadError):
    """The MD5 of what was read differs from the expected one.

    Attributes:
      kept: where the bytes (or, when streaming, the files extracted from them) were set aside.
    """

    def __init__(self, message: str, kept: str):
        super().__init__(message)
        self.kept = kept


class ArchiveError(HeldoutError, ValueError):
    """The archive is not a readable tar / tar.gz, or is truncated or corrupt, or a member
    would be written outside the destination, or is a link or special file (refused before
    anything is written)."""


# --- Dask clusters (`heldout.cluster`) ------------------------------------------------------


class ClusterError(HeldoutError, ValueError):
    """A Dask cluster that cannot be used: an unreachable scheduler, a bad worker count, more
    workers than visible GPUs."""


# --- The command line (`heldout.cli`) -------------------------------------------------------


class CommandError(HeldoutError):
    """A user-facing failure of a command: printed as `heldout <command>: error: <message>`,
    exit status 2."""


# --- Ctrl-C ---------------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped work that resumes (training runs, filling a predictions store,
    exporting runs), after the cluster it ran on was shut down: how far it got.

    A `KeyboardInterrupt`, so that ``except Exception`` never swallows it and code that stops
    on Ctrl-C still does; `heldout.cli.main` prints it in one line and exits with status 130.

    Attributes:
      completed: runs complete when it stopped (done before the call, and by it).
      total: runs the call was asked for.
    """

    def __init__(self, completed: int, total: int) -> None:
        super().__init__(completed, total)
        self.completed, self.total = int(completed), int(total)

    def __str__(self) -> str:
        return f"interrupted: {self.completed} of {self.total} runs completed"


@contextlib.contextmanager
def counting_interrupts(total: int, completed: Callable[[], int | None]) -> Iterator[None]:
    """Turns Ctrl-C (a `KeyboardInterrupt`) inside the block into `Interrupted`, with
    ``completed()`` runs of `total` counted once the block has unwound (its cluster shut down,
    its temporary files removed), so that no run completes after the count. ``completed()``
    None (nothing to count yet) lets the `KeyboardInterrupt` pass as it is, as does an
    `Interrupted` from an inner block."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        count = completed()
        if count is None:
            raise
        raise Interrupted(count, total) from None
