"""The heldout procedure: train runs on random subsets and write them in the release layout.

For run r at subset ratio s (Feldman & Zhang 2020, Sec. 3, estimators from random subsets): draw
``subsample_idx`` (``round(s * n)`` of the n training examples, without replacement) from the
run's seed, train a freshly initialised model on it with momentum SGD, evaluate every training
example (``train`` = in the subset, ``removed`` = held out) and every test example with
``is_training=False``, and write::

    <experiment>/<ratio>/<run_id>/aux_arrays.npz            (the release's keys and meaning)
    <experiment>/<ratio>/<run_id>/outputs.npz               (prediction, margin, logit confidence,
                                                             and the images' digests they are of)
    <experiment>/<ratio>/<run_id>/run.json                   (seed, configuration, accuracies)
    <experiment>/<ratio>/<run_id>/checkpoints/ckpt-<epochs>  (model, epoch, global_step, optimizer)

so `heldout inspect`, `heldout verify` and the estimators work on it unchanged. A run is built
in a hidden directory ``<ratio>/.<run_id>.tmp-XXXX`` and renamed into place when complete
(`heldout.train.rundir`); `heldout.experiment.open_experiment` never counts such a directory,
so an interrupted run is simply trained again the next time (complete runs are skipped:
resume). Runs can be split over processes or machines by run id
(`heldout.experiment.parse_run_ids`, `shard_run_ids`), or sent to Dask workers
(`train_experiment(..., workers=N)` or ``scheduler=``; `heldout.train.fanout`), one run or one
group of stacked runs per task (`heldout.train.groups`); a run locked by another live process
is left to it.

Everything random in a run comes from its seed, ``run_seed(seed, ratio, run_id)``: the subset,
the batch order (a fresh permutation of the subset each epoch, last batch smaller) and the
initial weights (TensorFlow's random ops seeded with ``tf.random.set_seed``, which sets
TensorFlow's global seed). `plan_run` gives the subset and batches of any run again
(`plan_runs`: of a list of run ids at a ratio).

Two training paths:

- ``per_step``: any architecture of `heldout.models`; one compiled call per step (the original
  code's way).
- ``stacked``: the MLP only; K runs per step with stacked weights, many steps per compiled
  call (`heldout.train.stacked`). ``auto`` (the default) takes it for the MLP, with K from
  `heldout.train.stacked.default_models_per_step` (1 on CPU, where one model in a compiled loop
  is the fastest; 128 on a GPU). Both paths give the same runs up to float32 rounding.
"""

from heldout.errors import DivergedError, TrainError
from heldout.train.config import (
    PATHS,
    TrainConfig,
)
from heldout.train.plan import (
    RunPlan,
    parse_shard,
    plan_run,
    plan_runs,
    ratio_name,
    run_seed,
    shard_run_ids,
)
from heldout.train.procedure import (
    TrainResult,
    train_experiment,
)
from heldout.train.rundir import (
    RUN_JSON,
    load_run_info,
    run_status,
)
from heldout.train.trainer import (
    ModelTrainer,
    evaluate_correctness,
    initial_model,
    make_model_trainer,
    train_model_run,
)

__all__ = [
    "DivergedError",
    "ModelTrainer",
    "PATHS",
    "RUN_JSON",
    "RunPlan",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "evaluate_correctness",
    "initial_model",
    "load_run_info",
    "make_model_trainer",
    "parse_shard",
    "plan_run",
    "plan_runs",
    "ratio_name",
    "run_seed",
    "run_status",
    "shard_run_ids",
    "train_experiment",
    "train_model_run",
]
