"""The exported tensor file: `model.safetensors` or `model.npz`, numpy only.

A tensor file holds the variables that evaluation reads, float32, in TensorFlow's own layout
(conv kernels HWIO, linear ``w`` [in, out], batch-norm moving statistics [1, 1, 1, C]), named by
their checkpoint key without the ``model/`` prefix and the ``/.ATTRIBUTES/VARIABLE_VALUE``
suffix, e.g. ``stage2/_body/3/conv3x3/bn/scale``. The moving averages' training state
(``moving_mean/_counter``, ``moving_mean/_hidden``, the same for ``moving_variance``) is left out:
evaluation reads only ``moving_mean/average`` and ``moving_variance/average`` (Sonnet 2's
``ExponentialMovingAverage.value``).

Metadata (safetensors ``__metadata__``, or an ``__metadata__`` key holding a JSON string in the
npz; see `Metadata`) says how to feed the model. This module imports neither TensorFlow nor
torch, so `heldout.pytorch` and the predictions store read it with numpy and safetensors only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

import numpy as np

from heldout.atomic import atomic_write
from heldout.data.preprocessing import InputPreprocessing
from heldout.errors import PreprocessingError, TensorFileError
from heldout.npzio import load_npz

SAFETENSORS = "model.safetensors"
NPZ = "model.npz"
SAVED_MODEL = "saved_model"
#: Export format name -> what it writes in a run directory.
FORMAT_FILES = {"safetensors": SAFETENSORS, "npz": NPZ, "savedmodel": SAVED_MODEL}
METADATA_KEY = "__metadata__"
#: Version of this file layout; bumped on any incompatible change. 2: the metadata records the
#: run's ``input_preprocessing`` (version 1 stated ``uint8 / 255`` for every run alike).
FORMAT_VERSION = "2"
#: ``input_scaling`` of a model whose input preprocessing is not known (see `Metadata`).
UNKNOWN_SCALING = "unknown"


def is_exported_variable(name: str) -> bool:
    """True for a tensor name evaluation reads (not a moving average's ``_counter``/``_hidden``)."""
    return not (name.endswith("/_counter") or name.endswith("/_hidden"))


@dataclasses.dataclass(frozen=True)
class Metadata:
    """What a tensor file says about its model.

    Attributes:
      architecture: ``small_inception``, ``resnet50`` or ``mlp``.
      num_classes: size of the output layer.
      input_shape: [height, width, channels] of one image (the model takes NHWC in TensorFlow).
      input_preprocessing: how uint8 images become the model's input, as the run was trained
        and evaluated (`heldout.data.preprocessing.InputPreprocessing`: e.g. uint8 / 16 for
        the digits); None when not known (then ``input_scaling`` reads ``unknown``).
      input_preprocessing_source: where `input_preprocessing` comes from (``run.json``, the
        release's convention for the architecture, a dataset given to `heldout export`), or,
        when it is unknown, why and how to give it.
      bn_epsilon: the batch-norm epsilon (1e-5 for every released model; 0 for the MLP).
      epoch, global_step: the checkpoint's counters (-1 when it had none).
      subset_ratio, run_id: the run's subset-ratio directory name and id ('' / -1 if unknown).
      source_checkpoint: the checkpoint prefix the values were read from.
      heldout_version: the library version that wrote the file.
    """

    architecture: str
    num_classes: int
    input_shape: tuple[int, ...]
    input_preprocessing: InputPreprocessing | None = None
    input_preprocessing_source: str = ""
    bn_epsilon: float = 1e-5
    epoch: int = -1
    global_step: int = -1
    subset_ratio: str = ""
    run_id: int = -1
    source_checkpoint: str = ""
    heldout_version: str = ""

    @property
    def input_scaling(self) -> str:
        """`input_preprocessing` in one line (e.g. ``uint8 / 255``), or ``unknown``."""
        pre = self.input_preprocessing
        return UNKNOWN_SCALING if pre is None else pre.describe()

    def to_strings(self) -> dict[str, str]:
        """The safetensors ``__metadata__`` (every value a string): the fields, with
        ``input_preprocessing`` as JSON (``null`` when unknown), plus ``input_scaling``,
        ``input_layout``, ``tensor_layout`` and ``format_version``."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "input_preprocessing":
                out[field.name] = json.dumps(None if value is None else value.to_dict())
            elif isinstance(value, tuple):
                out[field.name] = json.dumps(list(value))
            else:
                out[field.name] = str(value)
        out["input_scaling"] = self.input_scaling
        out["input_layout"] = "NHWC"
        out["tensor_layout"] = "tensorflow (conv HWIO, linear w [in, out])"
        out["format_version"] = FORMAT_VERSION
        return out

    @classmethod
    def from_strings(cls, path: str, values: Mapping[str, str]) -> Metadata:
        """Parses `to_strings` output. A file of format version 1 (earlier exports) stated
        ``uint8 / 255`` for every run whatever it was trained on: its input preprocessing is
        read as unknown, with a source saying to export the run again.

        Raises:
          TensorFileError: a field is missing or malformed (naming it).
        """
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        parsed: dict = {}
        for name in ("architecture", "num_classes", "input_shape"):
            if name not in values:
                raise TensorFileError(f"{path}: metadata has no {name!r}; found {sorted(values)}")
        for name, kind in kinds.items():
            if name not in values:
                continue
            text = values[name]
            try:
                if name == "input_shape":
                    parsed[name] = tuple(int(d) for d in json.loads(text))
                elif name == "input_preprocessing":
                    record = json.loads(text)
                    parsed[name] = (None if record is None else InputPreprocessing.from_dict(
                        record, f"{path}: metadata 'input_preprocessing'"))
                elif kind in ("int", int):
                    parsed[name] = int(text)
                elif kind in ("float", float):
                    parsed[name] = float(text)
                else:
                    parsed[name] = str(text)
            except (ValueError, TypeError, PreprocessingError) as e:
                raise TensorFileError(f"{path}: metadata {name!r} is {text!r} ({e})") from e
        if "input_preprocessing" not in values:
            parsed["input_preprocessing_source"] = (
                f"not recorded (file format {values.get('format_version', '1')}: its "
                f"input_scaling {values.get('input_scaling', '')!r} was written for every run "
                "alike); export the run again with this version of heldout")
        return cls(**parsed)


@dataclasses.dataclass(frozen=True)
class TensorFile:
    """A read tensor file: float32 arrays by name in TensorFlow layout, and its metadata
    (None when the file has none)."""

    path: str
    tensors: dict[str, np.ndarray]
    metadata: Metadata | None


def write_tensor_file(
    path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Metadata
) -> None:
    """Writes `tensors` (cast to float32) and `metadata` atomically, as safetensors when the name
    ends in ``.safetensors`` and as npz otherwise."""
    path = os.fspath(path)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(tensors.items())}
    if path.endswith(".safetensors"):
        from safetensors.numpy import save

        data = save(arrays, metadata=metadata.to_strings())
        with atomic_write(path) as f:
            f.write(data)
    else:
        arrays[METADATA_KEY] = np.array(json.dumps(metadata.to_strings()))
        with atomic_write(path) as f:
            np.savez(f, **arrays)


def read_tensor_file(path: str | os.PathLike) -> TensorFile:
    """Reads a `model.safetensors` or `model.npz` (by its first bytes), without unpickling.

    Returns:
      The file's float32 tensors by name and its metadata (None without ``__metadata__``).

    Raises:
      TensorFileError: missing, unreadable or truncated file; a tensor not float32; bad metadata.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TensorFileError(f"{path}: no such tensor file")
    with open(path, "rb") as f:
        magic = f.read(4)
    strings: Mapping[str, str] | None
    if magic.startswith(b"PK"):
        arrays = load_npz(path)
        raw = arrays.pop(METADATA_KEY, None)
        strings = None
        if raw is not None:
            try:
                strings = json.loads(str(raw))
            except ValueError as e:
                raise TensorFileError(f"{path}: {METADATA_KEY} is not JSON ({e})") from e
    else:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(path, framework="numpy") as f:
                strings = f.metadata()
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as e:
            raise TensorFileError(f"{path}: unreadable safetensors file ({e})") from e
    for name, value in arrays.items():
        if value.dtype != np.float32:
            raise TensorFileError(f"{path}: tensor {name!r} is {value.dtype}, expected float32")
    metadata = Metadata.from_strings(path, strings) if strings else None
    return TensorFile(path, arrays, metadata)


def find_tensor_file(directory: str | os.PathLike) -> str:
    """`<directory>/model.safetensors`, else `<directory>/model.npz`.

    Raises:
      TensorFileError: neither exists.
    """
    directory = os.fspath(directory)
    for name in (SAFETENSORS, NPZ):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise TensorFileError(
        f"{directory}: no exported model ({SAFETENSORS} or {NPZ}); write one with "
        f"`heldout export <experiment> --format safetensors --out <dir>`"
    )


def _square_side(n: int) -> int | None:
    side = int(round(n ** 0.5))
    return side if side * side == n else None


def infer_spec(
    shapes: Mapping[str, tuple[int, ...]], source: str
) -> tuple[str, int, tuple[int, ...]]:
    """The architecture, number of classes and input shape that tensors named like an exported
    file (no ``model/`` prefix) belong to.

    SmallInception has ``stage1/...`` and ``_pred/w`` [336, classes] (input 32x32 with
    ``conv1/conv/w``'s input channels); ResNet-50 ``_block_groups/...`` and ``_logits/w``
    (224x224x3); the MLP ``mlp/_layers/<i>/w`` (28x28x1 for 784 inputs, else a square image of
    one channel, else [n, 1, 1]).

    Raises:
      TensorFileError: none of these (the architecture must then be given).
    """
    if "_logits/w" in shapes and any(k.startswith("_block_groups/") for k in shapes):
        return "resnet50", int(shapes["_logits/w"][-1]), (224, 224, 3)
    if "_pred/w" in shapes and "conv1/conv/w" in shapes and any(
        k.startswith("stage1/") for k in shapes
    ):
        return "small_inception", int(shapes["_pred/w"][-1]), (
            32, 32, int(shapes["conv1/conv/w"][2]))
    layers = sorted(
        int(k.split("/")[2]) for k in shapes
        if k.startswith("mlp/_layers/") and k.endswith("/w") and k.split("/")[2].isdigit()
    )
    if layers:
        n_in = int(shapes[f"mlp/_layers/{layers[0]}/w"][0])
        side = _square_side(n_in)
        shape = (28, 28, 1) if n_in == 784 else (side, side, 1) if side else (n_in, 1, 1)
        return "mlp", int(shapes[f"mlp/_layers/{layers[-1]}/w"][-1]), shape
    raise TensorFileError(
        f"{source}: cannot infer the architecture from its {len(shapes)} tensors (e.g. "
        f"{sorted(shapes)[:3]}): expected stage1/... and _pred/w (small_inception), "
        "_block_groups/... and _logits/w (resnet50) or mlp/_layers/<i>/w (mlp); give the "
        "architecture explicitly"
    )
