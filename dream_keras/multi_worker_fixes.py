"""Work-arounds that let Keras 3's `fit` run under MultiWorkerMirroredStrategy.

Keras 3 (up to 3.15 at least) cannot fit under TF's multi-worker strategy out of the box:
keras-team/keras#20585 and tensorflow/tensorflow#72388. Two places fail:
1. before the first step, fit merges a batch with `strategy.reduce` to build the model,
   which the multi-worker strategy cannot do on a nested (x, y) batch;
2. after every step, scalar logs (the loss) are reduced with `axis=0`, which is invalid
   for a scalar ("Invalid reduction dimension 0 for input with 0 dimensions").
Both are patched here, and only for a run that uses the multi-worker strategy: this
module is imported only on that path, and refuses (ConfigurationError) a TensorFlow or
Keras outside the versions below, which tests/test_distributed_workers.py passed on.
This is the only module of the package that touches private Keras or TensorFlow names.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from dream_keras.errors import ConfigurationError

# The releases (major, minor) these patches were written for and tested with
# (tests/test_distributed_workers.py), inclusive.
TESTED_KERAS = ((3, 15), (3, 15))
TESTED_TENSORFLOW = ((2, 21), (2, 21))


def _major_minor(version: str) -> tuple:
    return tuple(int(part) for part in version.split(".")[:2])


def _check_versions() -> None:
    for name, installed, (low, high) in (("Keras", keras.__version__, TESTED_KERAS),
                                         ("TensorFlow", tf.__version__, TESTED_TENSORFLOW)):
        if not low <= _major_minor(installed) <= high:
            raise ConfigurationError(
                f"--strategy=multi_worker patches private Keras code tested only with "
                f"{name} {low[0]}.{low[1]}-{high[0]}.{high[1]}, but {name} {installed} is "
                f"installed; install a tested {name} (pip install "
                f"'{name.lower()}>={low[0]}.{low[1]},<{high[0]}.{high[1] + 1}') or train "
                "with --strategy=mirrored on one machine")


_check_versions()
from keras.src.backend.tensorflow import trainer as keras_tf_trainer  # noqa: E402


def build_from_local_batch(model, dataset: tf.data.Dataset, strategy) -> None:
    """Build the model and metrics from one local batch (the optimizer is already built:
    training.compiled_model), then skip fit's own reduce-based build (failure 1)."""
    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(dataset.take(1))))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def reduce_scalar_logs_without_axis() -> None:
    """Make Keras reduce scalar per-replica logs across workers with axis=None
    (failure 2); every other reduction goes through Keras unchanged."""
    original = keras_tf_trainer.reduce_per_replica
    if getattr(original, "_dream_keras_patch", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if (reduction in ("auto", "mean")
                and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)):
            return tf.nest.map_structure(lambda v: _mean_over_workers(v, strategy), values)
        return original(values, strategy, reduction)

    reduce_per_replica._dream_keras_patch = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def _mean_over_workers(value, strategy):
    local = strategy.experimental_local_results(value)[0]
    axis = None if local.shape.rank == 0 else 0
    return strategy.reduce("MEAN", value, axis=axis)
