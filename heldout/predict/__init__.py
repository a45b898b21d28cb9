"""Predictions store: every run's per-example outputs on a dataset split, in a zarr v3 group.

`predict` fills a store (in this process or on Dask workers, resumable); `open_store` reads it
(numpy or dask arrays); `read_outputs` reads one output and the masks (for
`heldout.attribution`); `to_datamodels` writes the datamodels layout. The store's arrays and
attributes are listed in `heldout.predict.store` and README.md ("Predictions store"). Nothing
here imports TensorFlow until a run is evaluated.
"""

from heldout.cluster import ClusterError, default_workers
from heldout.predict.backend import (
    BACKENDS,
    Backend,
    BackendError,
    RestoredRun,
    TensorFlowBackend,
    make_backend,
)
from heldout.predict.consumers import (
    StoreOutputs,
    accumulate_store,
    read_outputs,
    to_datamodels,
)
from heldout.predict.engine import (
    PredictError,
    PredictSummary,
    RunResult,
    TaskSpec,
    evaluate_run,
    parse_run_ids,
    predict,
    select_runs,
)
from heldout.predict.store import (
    DEFAULT_OUTPUTS,
    OUTPUTS,
    PredictionStore,
    StoreError,
    StoreLayout,
    logit_confidence,
    margin,
    open_store,
)

__all__ = [
    "BACKENDS", "DEFAULT_OUTPUTS", "OUTPUTS", "Backend", "BackendError", "ClusterError",
    "PredictError", "PredictSummary", "PredictionStore", "RestoredRun", "RunResult",
    "StoreError", "StoreLayout", "StoreOutputs", "TaskSpec", "TensorFlowBackend",
    "accumulate_store", "default_workers", "evaluate_run", "logit_confidence", "make_backend",
    "margin", "open_store", "parse_run_ids", "predict", "read_outputs", "select_runs",
    "to_datamodels",
]
