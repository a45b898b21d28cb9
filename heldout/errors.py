"""The library's error base: every failure caused by the input (a file, a flag, a dataset)
is a `HeldoutError`, so callers and the CLI can tell it from a bug; and `Interrupted`, Ctrl-C
with how far resumable work got.

The concrete types (`heldout.npzio.NpzError`, `heldout.experiment.LayoutError`,
`heldout.checkpoint.CheckpointError`, ...) subclass it; most also subclass `ValueError`, as
they did before this base existed, so existing ``except ValueError`` blocks keep working.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


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
