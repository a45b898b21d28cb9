"""Restore one released run, re-evaluate it and cross-check it with its aux arrays.

    python demo.py --run_dir=cifar10-inception/0.7/42 --dataset=cifar10:3.0.2 --split=test
    python demo.py --run_dir=../shared/reference/fmnist32/fmnist32-inception/0.5/0 \
        --dataset_npz=../shared/reference/fmnist32/dataset.npz
    python demo.py --run_dir=cifar100-inception/0.7/3 --dataset=cifar100:3.0.2
    python demo.py --run_dir=imagenet-resnet50/0.7/0 --tfrecord_dir=imagenet-tfrecords \
        --min_match_fraction=0.999

Prints the checkpoint's epoch and global step, the run's subset percentage, the accuracy on the
split and `N out of M predictions match`; exits 1 when fewer than --min_match_fraction match.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import app, flags  # noqa: E402

from heldout.data import load_dataset  # noqa: E402
from heldout.evaluate import make_evaluator_for, verify_run  # noqa: E402
from heldout.experiment import run_from_path  # noqa: E402

FLAGS = flags.DEFINE_string("run_dir", None, "run directory <experiment>/<ratio>/<run_id>")
DATASET = flags.DEFINE_string("dataset", None, "TFDS dataset, e.g. cifar10:3.0.2")
DATASET_NPZ = flags.DEFINE_string("dataset_npz", None, ".npz dataset (<split>__image/label)")
TFRECORD_DIR = flags.DEFINE_string("tfrecord_dir", None, "indexed TFRecord shards (ImageNet, "
                                    "written by `heldout build-imagenet`)")
INDEX_NPZ = flags.DEFINE_string("index_npz", None, "with --tfrecord_dir: the published "
                                "imagenet_index.npz, for labels when the shards have none")
IDX_DIR = flags.DEFINE_string("idx_dir", None, "directory of MNIST-format IDX files")
DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory")
ARCH = flags.DEFINE_enum("arch", None, ["small_inception", "resnet50", "mlp"],
                         "architecture (default: the released one for the dataset)")
SPLIT = flags.DEFINE_enum("split", "test", ["train", "test"], "split to evaluate")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 200, "evaluation batch size", lower_bound=1)
MIN_MATCH = flags.DEFINE_float("min_match_fraction", 1.0, "pass when at least this fraction "
                               "of predictions match (ImageNet: slightly below 1)",
                               lower_bound=0.0, upper_bound=1.0)
flags.mark_flag_as_required("run_dir")


def main(argv):
    del argv
    sources = (DATASET.value, DATASET_NPZ.value, TFRECORD_DIR.value, IDX_DIR.value)
    if sum(v is not None for v in sources) != 1:
        raise app.UsageError("give exactly one of --dataset and --dataset_npz "
                             "(or --tfrecord_dir / --idx_dir)")
    run = run_from_path(FLAGS.value)
    dataset = load_dataset(DATASET.value, DATASET_NPZ.value, (SPLIT.value,), DATA_DIR.value,
                           TFRECORD_DIR.value, INDEX_NPZ.value, IDX_DIR.value)
    evaluator = make_evaluator_for(dataset, ARCH.value)
    result = verify_run(evaluator, run, dataset, SPLIT.value, BATCH_SIZE.value)
    restored, aux, check = result.restored, result.aux, result.check
    if restored.note:
        print(restored.note)
    print(f"Checkpoint {restored.path}: epoch {restored.epoch}, global step "
          f"{restored.global_step}")
    print(f"Subset: {aux.subset_ratio:.1%} of the training set "
          f"({len(aux.subsample_idx)} of {aux.num_train} examples)")
    print(f"Accuracy on {SPLIT.value}: {result.predictions.accuracy:.4f}")
    print(f"{check.num_match} out of {check.num_total} predictions match")
    return 0 if check.match_fraction >= MIN_MATCH.value else 1


if __name__ == "__main__":
    sys.exit(app.run(main))
