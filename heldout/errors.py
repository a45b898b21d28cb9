"""The library's error base: every failure caused by the input (a file, a flag, a dataset)
is a `HeldoutError`, so callers and the CLI can tell it from a bug.

The concrete types (`heldout.npzio.NpzError`, `heldout.experiment.LayoutError`,
`heldout.checkpoint.CheckpointError`, ...) subclass it; most also subclass `ValueError`, as
they did before this base existed, so existing ``except ValueError`` blocks keep working.
"""

from __future__ import annotations


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
