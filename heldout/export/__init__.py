"""Exporting runs' models: `model.safetensors`, `model.npz` or a TensorFlow SavedModel per run.

- `heldout.export.tensorfile` (numpy and safetensors only): the tensor-file format, its
  metadata, reading and writing; what `heldout.pytorch` reads.
- `heldout.export.runs` (TensorFlow): restoring a run through the verified restore of
  `heldout.checkpoint` and writing it, resumably and atomically.

This package imports neither TensorFlow nor torch; `heldout.export.runs` imports TensorFlow.
"""
