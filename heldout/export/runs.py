"""Exporting runs: restore each run's final checkpoint (verified) and write its model.

For each run ``<experiment>/<ratio>/<run_id>`` it writes ``<out>/<ratio>/<run_id>/`` holding
``model.safetensors``, ``model.npz`` or ``saved_model/`` (see `heldout.export.tensorfile`) and a
copy of the run's ``aux_arrays.npz`` (and of its ``outputs.npz`` when it recorded one), so the
export tree is itself an experiment that `heldout.experiment.open_experiment` reads. Every file
is written atomically (the aux arrays last, so a run appears in the tree only once its model is
there); a SavedModel is built in a temporary directory and renamed into place. Runs already
exported are skipped.

The metadata states the input preprocessing the run was trained and evaluated with
(`run_preprocessing`): from its ``run.json`` (runs of `heldout.train`), else from a dataset
given to the export, else, for a run without run.json (a released run), the release's for its
architecture; otherwise it says ``unknown`` and how to record it, never a guess.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from heldout import __version__
from heldout.atomic import atomic_write, fsync_directory
from heldout.checkpoint import find_final_checkpoint, model_variable_keys, restore
from heldout.data.preprocessing import RELEASED, InputPreprocessing
from heldout.errors import CheckpointError, ExportError, HeldoutError
from heldout.experiment import AUX_ARRAYS, OUTPUTS, RUN_JSON, Run
from heldout.export.tensorfile import (
    FORMAT_FILES,
    Metadata,
    infer_spec,
    is_exported_variable,
    write_tensor_file,
)
from heldout.models import build_model, create_variables

_PREFIX = "model/"
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model a checkpoint is restored into."""

    arch: str
    num_classes: int
    input_shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ExportOutcome:
    """What happened to one run: status ``exported``, ``skipped`` (already there) or
    ``failed`` (with the error message); `path` is the written file or directory."""

    run: Run
    status: str
    path: str
    message: str = ""


def checkpoint_spec(
    prefix: str,
    arch: str | None = None,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> ModelSpec:
    """The model for a checkpoint: given values win, the rest is inferred from its variable
    names and shapes (`heldout.export.tensorfile.infer_spec`).

    Raises:
      CheckpointError: unreadable checkpoint. TensorFileError: not inferable.
    """
    if arch is not None and num_classes is not None and input_shape is not None:
        return ModelSpec(arch, int(num_classes), tuple(int(d) for d in input_shape))
    try:
        shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(f"{prefix}: unreadable checkpoint ({type(e).__name__}: {e})") from e
    names = {k[len(_PREFIX):-len(_SUFFIX)]: tuple(v) for k, v in shapes.items()
             if k.startswith(_PREFIX) and k.endswith(_SUFFIX)}
    inferred = infer_spec(names, prefix)
    return ModelSpec(
        arch or inferred[0],
        int(num_classes if num_classes is not None else inferred[1]),
        tuple(int(d) for d in (input_shape or inferred[2])),
    )


class _Models:
    """One Sonnet model per spec, reused across runs (restore assigns every variable)."""

    def __init__(self) -> None:
        self._models: dict[ModelSpec, object] = {}

    def get(self, spec: ModelSpec):
        if spec not in self._models:
            model = build_model(spec.arch, spec.num_classes)
            create_variables(model, spec.input_shape)
            self._models[spec] = model
        return self._models[spec]


def model_tensors(model) -> dict[str, np.ndarray]:
    """The exported tensors of a (restored) Sonnet model: name without ``model/`` and the
    checkpoint suffix -> float32 value in TensorFlow layout."""
    out = {}
    for key, var in model_variable_keys(model).items():
        name = key[len(_PREFIX):-len(_SUFFIX)]
        if is_exported_variable(name):
            out[name] = np.asarray(var.numpy(), dtype=np.float32)
    return out


def _bn_epsilon(arch: str) -> float:
    return 0.0 if arch == "mlp" else 1e-5


def save_saved_model(model, input_shape: Sequence[int], directory: str) -> None:
    """Writes a SavedModel with a ``serving_default`` signature: float32 images
    [None, *input_shape] in [0, 1] (input ``images``) -> ``logits`` float32 [None, classes],
    built in a temporary directory beside `directory` and renamed onto it."""
    module = tf.Module()
    module.model = model
    module.serve = tf.function(
        lambda images: {"logits": model(images, is_training=False)},
        input_signature=[tf.TensorSpec([None, *input_shape], tf.float32, name="images")],
    )
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(directory)}.{secrets.token_hex(6)}.tmp")
    try:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
        os.rename(tmp, directory)
        fsync_directory(parent)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


def _copy_atomic(src: str, dst: str) -> None:
    with open(src, "rb") as f_in, atomic_write(dst) as f_out:
        shutil.copyfileobj(f_in, f_out)


def check_out_dir(out_dir: str, experiment_root: str) -> None:
    """Refuses an output directory inside (or equal to) the experiment being exported.

    Raises:
      ExportError: naming both.
    """
    out = os.path.realpath(out_dir)
    root = os.path.realpath(experiment_root)
    if out == root or out.startswith(root + os.sep):
        raise ExportError(
            f"`out_dir`={out_dir} is inside the experiment {experiment_root}; the export would "
            "become part of it; choose a directory outside it"
        )


def run_preprocessing(
    run: Run, arch: str, dataset: InputPreprocessing | None = None, dataset_name: str = ""
) -> tuple[InputPreprocessing | None, str]:
    """How `run`'s images became its model's input, and where that is known from.

    In order: the run's ``run.json`` (written by `heldout.train`; a `dataset` given as well
    must agree with it); the `dataset` given (named `dataset_name`); for a run without run.json
    (a released run), the release's for its architecture
    (`heldout.data.preprocessing.RELEASED`: SmallInception CIFAR uint8 / 255, ResNet-50 the
    ImageNet preprocessing). Otherwise unknown: never guessed.

    Returns:
      (the preprocessing or None, its source: ``run.json``, the dataset, the release's
      convention, or why it is unknown and how to give it).

    Raises:
      ExportError: `dataset` differs from the run's recorded preprocessing.
      LayoutError, PreprocessingError: an unreadable run.json or record.
    """
    recorded = run.input_preprocessing()
    if recorded is not None:
        if dataset is not None and dataset != recorded:
            raise ExportError(
                f"run {run.name} was trained on input {recorded.describe()} (its {RUN_JSON}), "
                f"but the dataset {dataset_name} gives {dataset.describe()}: not the data it "
                "was trained on; leave the dataset out (the run's own record is used)")
        return recorded, RUN_JSON
    if dataset is not None:
        return dataset, f"the dataset {dataset_name}, given to heldout export"
    has_info = os.path.isfile(os.path.join(run.path, RUN_JSON))
    if not has_info and arch in RELEASED:
        return RELEASED[arch], (f"the release's convention for {arch} runs (the run has no "
                                f"{RUN_JSON}, as released runs)")
    why = (f"its {RUN_JSON} predates recorded input preprocessing" if has_info else
           f"it has no {RUN_JSON} and no {arch} runs were released")
    return None, (f"unknown: {why}; export it again with the dataset it was trained on "
                  "(--dataset_npz, --idx_dir, --dataset or --tfrecord_dir) to record it")


def export_run(
    run: Run,
    out_dir: str | os.PathLike,
    fmt: str,
    arch: str | None = None,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    models: _Models | None = None,
    dataset: InputPreprocessing | None = None,
    dataset_name: str = "",
) -> ExportOutcome:
    """Exports one run to ``<out_dir>/<ratio>/<run_id>/`` (see the module docstring).

    Args:
      run: the run (it needs a complete checkpoint and its aux arrays).
      out_dir: root of the export tree.
      fmt: ``safetensors``, ``npz`` or ``savedmodel``.
      arch, num_classes, input_shape: the model; inferred from the checkpoint when None.
      dataset, dataset_name: the input preprocessing of a dataset given to the export
        (`heldout.data.Dataset.input_preprocessing`) and its name, for runs that did not
        record theirs (see `run_preprocessing`).

    Returns:
      ``skipped`` when the model and the aux arrays are already there, else ``exported``.

    Raises:
      CheckpointError: no complete checkpoint, or one that does not fit the model (the verified
        restore of `heldout.checkpoint`). TensorFileError: architecture not inferable.
      ExportError: unknown format; a `dataset` that differs from the run's own record.
    """
    if fmt not in FORMAT_FILES:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {list(FORMAT_FILES)}")
    target_dir = os.path.join(os.fspath(out_dir), run.ratio, str(run.run_id))
    target = os.path.join(target_dir, FORMAT_FILES[fmt])
    aux_copy = os.path.join(target_dir, AUX_ARRAYS)
    if os.path.exists(target) and os.path.isfile(aux_copy):
        return ExportOutcome(run, "skipped", target, "already exported")
    if not os.path.exists(target):
        files, _ = find_final_checkpoint(run.path)
        spec = checkpoint_spec(files.prefix, arch, num_classes, input_shape)
        preprocessing, source = run_preprocessing(run, spec.arch, dataset, dataset_name)
        model = (models or _Models()).get(spec)
        restored = restore(model, run.path)
        if fmt == "savedmodel":
            save_saved_model(model, spec.input_shape, target)
        else:
            metadata = Metadata(
                architecture=spec.arch, num_classes=spec.num_classes,
                input_shape=spec.input_shape, input_preprocessing=preprocessing,
                input_preprocessing_source=source,
                bn_epsilon=_bn_epsilon(spec.arch), epoch=restored.epoch,
                global_step=restored.global_step, subset_ratio=run.ratio, run_id=run.run_id,
                source_checkpoint=restored.path, heldout_version=__version__,
            )
            write_tensor_file(target, model_tensors(model), metadata)
    if run.has_outputs():
        _copy_atomic(run.outputs_path, os.path.join(target_dir, OUTPUTS))
    _copy_atomic(run.aux_path, aux_copy)
    return ExportOutcome(run, "exported", target)


def export_runs(
    runs: Iterable[Run],
    out_dir: str | os.PathLike,
    fmt: str,
    arch: str | None = None,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    dataset: InputPreprocessing | None = None,
    dataset_name: str = "",
) -> Iterable[ExportOutcome]:
    """Exports runs one after another with one model per architecture, yielding each outcome;
    a run that fails (no checkpoint, a checkpoint that does not fit, a `dataset` other than
    its recorded one) yields ``failed`` and the others go on. `dataset`, `dataset_name`: see
    `export_run`."""
    models = _Models()
    for run in runs:
        try:
            yield export_run(run, out_dir, fmt, arch, num_classes, input_shape, models,
                             dataset, dataset_name)
        except HeldoutError as e:
            yield ExportOutcome(run, "failed", "", str(e))
