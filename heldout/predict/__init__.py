"""Predictions store: every run's per-example outputs on a dataset split, in a zarr v3 group.

`predict` fills a store (in this process or on Dask workers, resumable; runs selected by
`heldout.experiment.select_runs` and evaluated through `heldout.evaluate`, the one evaluation
path, with either backend, or read from the outputs they recorded at the end of training,
`heldout.predict.recorded`); `open_store` reads it (numpy or dask arrays); `read_outputs` reads
one output and the masks (for `heldout.attribution`); `to_datamodels` writes the datamodels
layout. The store's arrays and attributes are listed in `heldout.predict.store` and README.md
("Predictions store"). Nothing here imports TensorFlow until a run is evaluated.
"""

from heldout.cluster import default_workers
from heldout.errors import ClusterError, PredictError, StoreError
from heldout.predict.consumers import (
    StoreOutputs,
    accumulate_store,
    read_outputs,
    to_datamodels,
)
from heldout.predict.engine import (
    PredictSummary,
    RunResult,
    TaskSpec,
    WorkerState,
    evaluate_run,
    predict,
)
from heldout.predict.recorded import SOURCES
from heldout.predict.store import (
    DEFAULT_OUTPUTS,
    OUTPUTS,
    PredictionStore,
    StoreLayout,
    logit_confidence,
    margin,
    open_store,
)

__all__ = [
    "DEFAULT_OUTPUTS", "OUTPUTS", "SOURCES", "ClusterError", "PredictError", "PredictSummary",
    "PredictionStore", "RunResult", "StoreError", "StoreLayout",
    "StoreOutputs", "TaskSpec", "WorkerState", "accumulate_store", "default_workers",
    "evaluate_run", "logit_confidence", "margin", "open_store", "predict", "read_outputs",
    "to_datamodels",
]
