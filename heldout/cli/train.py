"""`heldout train`: the heldout procedure on a dataset, runs written in the release layout."""

from __future__ import annotations

import argparse
import os
import sys

from heldout.cli.common import (
    HelpFormatter,
    command_message,
    dataset_spec,
    non_negative_int,
    run_ids_flag,
)
from heldout.errors import CommandError
from heldout.experiment import RunIds

DEFAULTS = {"epochs": 10, "batch_size": 128, "learning_rate": 0.1, "momentum": 0.9}
#: The most runs one command trains: the selection is checked as ranges before anything is
#: built, since training keeps a few objects per run id (a typo such as 0-9999999999 would
#: otherwise build ten billion of them). Larger experiments take several commands.
MAX_RUNS = 1_000_000


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `train` to the `heldout` parser."""
    p = subparsers.add_parser(
        "train",
        help="train runs on random subsets and write them in the release layout",
        description="For each run id: draw a random subset of the training split (--ratio) "
        "from the run's seed, train a fresh model on it with momentum SGD, evaluate every "
        "training and test example and write EXPERIMENT_DIR/<ratio>/<run_id>/{aux_arrays.npz, "
        "run.json, checkpoints/ckpt-<epochs>}. A run appears only when complete; complete runs "
        "are skipped, so an interrupted command resumes where it stopped. Runs are trained in "
        "this process (--workers 0, the default) or on Dask workers: --workers N starts a local "
        "cluster of N worker processes (one per GPU, each pinned to its GPU), --scheduler uses "
        "an existing cluster; each task trains one run (K stacked MLP runs on the stacked "
        "path), each worker keeps its dataset and compiled step, and a run whose worker dies "
        "is trained again. Split the runs over processes or machines without Dask with "
        "--run_ids or --shard. Exits 1 when a run failed on a worker (named in the output).",
        epilog="examples: heldout train exp --dataset_npz data.npz --arch small_inception "
        "--ratio 0.5 --run_ids 0-99 --shard 0/4;  heldout train exp --dataset cifar10:3.0.2 "
        "--num_runs 400 --workers 4;  heldout train exp --idx_dir fmnist --num_runs 2000 "
        "--scheduler scheduler.json",
        formatter_class=HelpFormatter,
    )
    p.add_argument("experiment_dir", help="<experiment> directory (created if needed)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--dataset", help="TFDS dataset, e.g. mnist or cifar10:3.0.2")
    group.add_argument("--dataset_npz", help=".npz dataset with <split>__image/<split>__label")
    group.add_argument("--idx_dir", help="directory of MNIST-format IDX files (train-images-"
                       "idx3-ubyte[.gz], ...), e.g. /usr/share/datasets/fashion-mnist")
    p.add_argument("--data_dir", default=None, help="TFDS data directory")
    p.add_argument("--arch", default=None, help="mlp | small_inception | resnet50 (default: "
                   "the released architecture for the dataset's image shape)")
    p.add_argument("--ratio", type=float, default=0.7, help="subset ratio in (0, 1]")
    ids = p.add_mutually_exclusive_group(required=True)
    ids.add_argument("--run_ids", help="run ids, e.g. 0-499 or 0-9,20-29 (inclusive)")
    ids.add_argument("--num_runs", type=int, help="run ids 0 .. N-1")
    p.add_argument("--shard", default=None, help="i/n: train only every n-th of the run ids, "
                   "starting at the i-th (0 <= i < n)")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="epochs per run")
    p.add_argument("--batch_size", type=int, default=DEFAULTS["batch_size"],
                   help="training examples per step")
    p.add_argument("--learning_rate", type=float, default=DEFAULTS["learning_rate"],
                   help="SGD learning rate")
    p.add_argument("--momentum", type=float, default=DEFAULTS["momentum"],
                   help="SGD momentum")
    p.add_argument("--seed", type=int, default=0, help="experiment seed; each run's seed is "
                   "derived from it, the ratio and the run id (recorded in run.json)")
    p.add_argument("--train_size", type=int, default=None,
                   help="use only the first N training examples")
    p.add_argument("--path", default="auto", choices=["auto", "per_step", "stacked"],
                   help="per_step: one compiled call per step (any model); stacked: K MLPs "
                   "per step in a compiled loop; auto: stacked for the MLP")
    p.add_argument("--models_per_step", type=int, default=None,
                   help="K for the stacked path (default: 1 on CPU, 128 on a GPU)")
    p.add_argument("--checkpoint_every", type=int, default=1, help="write checkpoints for "
                   "run ids divisible by this (1: all; 0: none)")
    p.add_argument("--no_xla", action="store_true", help="do not compile with XLA")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    dask = p.add_mutually_exclusive_group()
    dask.add_argument("--workers", type=non_negative_int, default=0,
                      help="Dask worker processes of a local cluster (at most one per visible "
                      "GPU, each pinned to its GPU); 0 trains in this process without Dask")
    dask.add_argument("--scheduler", default=None, help="address (tcp://host:8786) or "
                      "scheduler file of an existing Dask cluster to train on")
    p.add_argument("--retries", type=non_negative_int, default=1,
                   help="Dask retries of a task that crashed")
    p.set_defaults(handler=train_command)


def training_data_spec(args: argparse.Namespace):
    """The `DatasetSpec` of --dataset / --dataset_npz / --idx_dir, cut to --train_size (with
    absolute paths for Dask workers)."""
    spec = dataset_spec(args)
    # Workers may run in another directory or on another machine.
    return spec.absolute() if args.workers or args.scheduler is not None else spec


def refuse_nested_destination(experiment_dir: str) -> None:
    """Refuses an experiment directory that is, or lies inside, a run or subset-ratio
    directory of another experiment (training there would nest ``<ratio>/<run_id>`` inside it).

    Raises:
      CommandError: naming the run or ratio directory and the experiment it belongs to.
    """
    from heldout.experiment import enclosing_layout_dir

    found = enclosing_layout_dir(experiment_dir)
    if found is None:
        return
    kind, directory = found
    experiment = os.path.dirname(directory) if kind == "ratio" else os.path.dirname(
        os.path.dirname(directory))
    what = "a run directory" if kind == "run" else "a subset-ratio directory"
    where = "is" if os.path.abspath(experiment_dir) == directory else f"lies inside {directory},"
    raise CommandError(
        f"{experiment_dir} {where} {what} of the experiment {experiment}; give an experiment "
        f"directory (e.g. {experiment}) and --ratio, not a directory inside one"
    )


def train_command(args: argparse.Namespace) -> int:
    refuse_nested_destination(args.experiment_dir)
    if args.num_runs is not None and args.num_runs < 1:
        raise CommandError(f"--num_runs must be >= 1, got {args.num_runs}")
    run_ids = (RunIds.first_n(args.num_runs) if args.run_ids is None else
               run_ids_flag(args.run_ids))
    if len(run_ids) > MAX_RUNS:  # before anything is imported or built, as ranges
        flag = f"--num_runs {args.num_runs}:" if args.run_ids is None else (
            f"--run_ids: {args.run_ids}")
        raise CommandError(f"{flag} selects {len(run_ids)} runs; a command trains at most "
                           f"{MAX_RUNS}")
    if args.workers or args.scheduler is not None:
        from heldout.cluster import check

        check(args.scheduler, args.workers)  # Before TensorFlow loads: fails in a second.
    from heldout.quiet import import_tensorflow

    import_tensorflow()
    from heldout.data import load_dataset
    from heldout.models import default_arch
    from heldout.train import (
        TrainConfig,
        parse_shard,
        ratio_name,
        shard_run_ids,
        train_experiment,
    )

    run_ids = list(run_ids)
    if args.shard:
        run_ids = shard_run_ids(run_ids, *parse_shard(args.shard))
    ratio = ratio_name(args.ratio)
    spec = training_data_spec(args)
    dataset = load_dataset(spec, ("train", "test"))
    arch = args.arch or default_arch(dataset.name, dataset.image_shape)
    config = TrainConfig(
        arch=arch, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, momentum=args.momentum, seed=args.seed,
        path=args.path, models_per_step=args.models_per_step,
        checkpoint_every=args.checkpoint_every, jit_compile=not args.no_xla,
    )
    print(f"training {len(run_ids)} runs of {arch} at ratio {ratio} on {dataset.name} "
          f"({dataset.num_examples('train')} train, {dataset.num_examples('test')} test), "
          f"path {config.resolved_path()}, {config.resolved_models_per_step()} per step"
          + (f", on {args.workers} Dask workers" if args.workers else "")
          + (f", on the Dask cluster {args.scheduler}" if args.scheduler else ""),
          file=sys.stderr)
    result = train_experiment(args.experiment_dir, dataset, float(ratio), run_ids, config,
                              progress=not args.quiet, workers=args.workers,
                              scheduler=args.scheduler, dataset_spec=spec, retries=args.retries)
    for run_id, error in result.failed:
        print(f"run {run_id}: FAILED: {command_message(args, error)}")
    busy = (f", left {len(result.busy)} runs being trained by another process "
            f"({result.busy[:5]})" if result.busy else "")
    failed = f", {len(result.failed)} runs failed" if result.failed else ""
    print(f"trained {len(result.trained)} runs, skipped {len(result.skipped)} complete runs"
          f"{busy}{failed}, in {result.seconds:.1f} s; runs in "
          f"{os.path.join(args.experiment_dir, ratio)}")
    if result.failed:
        print(f"{len(result.failed)} runs failed; run the command again to retry them",
              file=sys.stderr)
    return 1 if result.failed else 0
