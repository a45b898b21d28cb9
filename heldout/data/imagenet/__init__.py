"""The release's ImageNet as indexed TFRecord shards.

- `heldout.data.imagenet.mapping`: the authors' filename-to-index mapping (pure numpy).
- `heldout.data.imagenet.tfrecords`: reading shards as a dataset, evaluation preprocessing.
- `heldout.data.imagenet.build`: writing shards from the ILSVRC-2012 files.

The submodules that read or write shards import TensorFlow; this package itself does not.
"""
