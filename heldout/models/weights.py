"""The finite check of a model's restored weights (numpy only, no TensorFlow or torch).

Both restores call it once, on the values they read, before any is assigned: the verified
TensorFlow restore (`heldout.checkpoint.restore`) and the PyTorch one
(`heldout.pytorch.load.load_tensors`). A NaN weight does not always give NaN logits (TensorFlow's
max-pool drops NaN on the CPU), so the logits' own check cannot replace it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from heldout.errors import NonFiniteWeightsError


def check_finite_weights(weights: Mapping[str, np.ndarray], source: str) -> None:
    """Refuses a model whose weights or moving statistics hold NaN or inf (one pass).

    Args:
      weights: the values by name (float arrays; integer counters are always finite).
      source: the file(s) read, for the message.

    Raises:
      NonFiniteWeightsError: naming `source`, how many tensors are affected, the first of them
        and how many of its values.
    """
    bad = {}
    for name, value in weights.items():
        value = np.asarray(value)
        if value.dtype.kind in "fc":
            count = value.size - int(np.count_nonzero(np.isfinite(value)))
            if count:
                bad[name] = (count, value.size)
    if bad:
        name, (count, size) = next(iter(bad.items()))
        raise NonFiniteWeightsError(
            f"{source}: non-finite weights (NaN or inf) in {len(bad)} of {len(weights)} tensors, "
            f"first {name} ({count} of {size} values); the run diverged or its files are "
            "corrupt, so its predictions would be wrong"
        )
