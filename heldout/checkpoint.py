"""Finding and restoring a run's checkpoint, verified variable by variable.

The release's checkpoints were written by ``tf.train.Checkpoint(model=<Sonnet module>,
epoch=<int64>, global_step=<int64>, ...)`` (training checkpoints also hold optimizer slots), with
``Checkpoint.write``, as ``<run>/checkpoints/ckpt-<epoch>.{index,data-*-of-*}``. Keys look like
``model/conv1/conv/w/.ATTRIBUTES/VARIABLE_VALUE``.

`restore` checks every model variable against the checkpoint's key list, shapes and dtypes, reads
every value with TensorFlow's checkpoint reader (`tf.train.load_checkpoint`) and only then assigns
them, so a model is never evaluated half-restored or with random weights, and extra objects in the
checkpoint (optimizer slots) are ignored without hiding anything the model needed. The values
read are checked finite first (`heldout.models.weights`): a NaN weight fails the restore. Keys
are the ones `tf.train.Checkpoint(model=...)` writes (`model_variable_keys`).
"""

from __future__ import annotations

import dataclasses
import os

import sonnet as snt
import tensorflow as tf

from heldout.errors import CheckpointError
from heldout.experiment import CheckpointFiles, find_checkpoints
from heldout.models import create_variables
from heldout.models.weights import check_finite_weights

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass(frozen=True)
class RestoredCheckpoint:
    """What `restore` read.

    Attributes:
      path: the checkpoint prefix (``.../checkpoints/ckpt-<epoch>``).
      epoch: the stored ``epoch`` variable (the file name's number if the checkpoint has none).
      global_step: the stored ``global_step`` variable, or -1 if the checkpoint has none.
      note: a remark worth printing (e.g. several checkpoints found), or ''.
    """

    path: str
    epoch: int
    global_step: int
    note: str = ""


def model_variable_keys(model: snt.Module, root: str = "model") -> dict[str, tf.Variable]:
    """Checkpoint key of each model variable, e.g. ``model/_pred/w/.ATTRIBUTES/VARIABLE_VALUE``.

    Keys are the module's attribute paths (list items by position), as tf.train.Checkpoint
    names them.
    """
    flat = model._flatten(predicate=lambda v: isinstance(v, tf.Variable), with_path=True)
    return {f"{root}/" + "/".join(map(str, path)) + _SUFFIX: var for path, var in flat}


def find_final_checkpoint(run_dir: str | os.PathLike) -> tuple[CheckpointFiles, str]:
    """The highest-epoch complete ``ckpt-<epoch>`` of a run, and a note when there were several.

    Raises:
      CheckpointError: the run has no complete checkpoint.
    """
    run_dir = os.fspath(run_dir)
    found = find_checkpoints(run_dir)
    complete = [c for c in found if c.complete]
    if not complete:
        detail = (
            f"incomplete checkpoint(s) {[os.path.basename(c.prefix) for c in found]} "
            "(an .index without all its .data shards)"
            if found
            else "no checkpoints/ckpt-<epoch>.index"
        )
        raise CheckpointError(f"{run_dir}: no complete checkpoint: {detail}")
    note = ""
    if len(complete) > 1:
        note = (
            f"{len(complete)} checkpoints (epochs {[c.epoch for c in complete]}); "
            f"using the highest, ckpt-{complete[-1].epoch}"
        )
    return complete[-1], note


def _reader(prefix: str) -> tf.train.CheckpointReader:
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(f"{prefix}: unreadable checkpoint ({type(e).__name__}: {e})") from e


def check_fits(
    model: snt.Module,
    prefix: str,
    root: str = "model",
    reader: tf.train.CheckpointReader | None = None,
) -> dict[str, tf.Variable]:
    """Checks that the checkpoint holds every model variable with the same shape and dtype, and
    that every variable the checkpoint holds under `root` belongs to the model (so a model with
    variables still to be created, or a smaller architecture, is refused).

    Returns:
      The model's variables by checkpoint key.

    Raises:
      CheckpointError: naming the first variables that are missing or differ, with both shapes.
    """
    reader = reader or _reader(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    wanted = model_variable_keys(model, root)
    missing = [k for k in wanted if k not in shapes]
    if missing:
        roots = sorted({k.split("/")[0] for k in shapes if k.endswith(_SUFFIX)})
        raise CheckpointError(
            f"{prefix}: {len(missing)} of the model's {len(wanted)} variables are not in the "
            f"checkpoint, e.g. {missing[:3]}; the checkpoint's top-level objects are {roots} "
            f"(expected {root!r} holding a {type(model).__name__}); is it another architecture?"
        )
    unused = sorted(
        k for k in shapes if k.startswith(f"{root}/") and k.endswith(_SUFFIX) and k not in wanted
    )
    if unused:
        raise CheckpointError(
            f"{prefix}: the checkpoint holds {len(unused)} variables under {root!r} that the "
            f"model ({type(model).__name__}, {len(wanted)} variables) lacks, e.g. {unused[:3]}; "
            "was the model called once before restoring (pass input_shape), and is it the "
            "same architecture?"
        )
    for key, var in wanted.items():
        if tuple(shapes[key]) != tuple(var.shape):
            raise CheckpointError(
                f"{prefix}: variable {key[: -len(_SUFFIX)]} has shape {tuple(shapes[key])} in the "
                f"checkpoint but {tuple(var.shape)} in the model ({type(model).__name__}); "
                "wrong number of classes or architecture?"
            )
        if dtypes[key] != var.dtype:
            raise CheckpointError(
                f"{prefix}: variable {key[: -len(_SUFFIX)]} is {dtypes[key].name} in the "
                f"checkpoint but {var.dtype.name} in the model (feed float32 images)"
            )
    return wanted


def restore(
    model: snt.Module,
    path: str | os.PathLike,
    input_shape: tuple[int, ...] | None = None,
) -> RestoredCheckpoint:
    """Restores a release checkpoint into `model`, verifying that every variable was loaded.

    Args:
      model: a Sonnet module whose attribute names follow the release (see `heldout.models`).
      path: a run directory (its final checkpoint is used) or a checkpoint prefix.
      input_shape: [height, width, channels]: when given, the model is called once on zeros
        first so that all its variables exist. Leave it out only for a model that has been
        called. The same model can be restored again and again (e.g. one run after another).

    Returns:
      The checkpoint's prefix, epoch and global step.

    Raises:
      CheckpointError: no complete checkpoint; unreadable or corrupt files; a model variable
        missing from the checkpoint or of another shape or dtype; nothing restored.
      NonFiniteWeightsError: a weight or moving statistic is NaN or infinite (the model is
        left unchanged).
    """
    path = os.fspath(path)
    note = ""
    if os.path.isdir(path):
        files, note = find_final_checkpoint(path)
        prefix = files.prefix
    else:
        prefix = path
        if not os.path.isfile(prefix + ".index"):
            raise CheckpointError(f"{prefix}: no such checkpoint (no {prefix}.index)")
    if input_shape is not None:
        # Sonnet creates most variables on the first call (some, such as BatchNorm's moving
        # averages, earlier), so one call makes sure all exist before the key check. It does
        # not change any variable (is_training=False).
        create_variables(model, input_shape)
    reader = _reader(prefix)
    wanted = check_fits(model, prefix, reader=reader)
    counter_keys = [f"{name}{_SUFFIX}" for name in ("epoch", "global_step")]
    try:
        # Every value is read before any is assigned: a corrupt data shard fails here and
        # leaves the model as it was, never half-restored.
        values = {key: reader.get_tensor(key) for key in wanted}
        counters = {
            key.split("/")[0]: int(reader.get_tensor(key))
            for key in counter_keys
            if reader.has_tensor(key)
        }
    except Exception as e:  # noqa: BLE001 - TF raises OpError, IndexError, ValueError...
        raise CheckpointError(
            f"{prefix}: restore failed, corrupt data; the model was left unchanged "
            f"({type(e).__name__}: {e})"
        ) from e
    # One pass over the values read: a NaN weight or moving statistic fails the restore (the
    # model is left unchanged), since it does not always show in the logits.
    check_finite_weights({key[: -len(_SUFFIX)]: v for key, v in values.items()}, prefix)
    for key, var in wanted.items():
        var.assign(values[key])
    epoch = counters.get("epoch", -1)
    if epoch < 0 and os.path.basename(prefix).rsplit("-", 1)[-1].isdigit():
        epoch = int(os.path.basename(prefix).rsplit("-", 1)[-1])
    step = counters.get("global_step", -1)
    return RestoredCheckpoint(prefix, epoch, step, note)
