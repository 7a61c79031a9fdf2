"""tf.data pipelines over encoded sequences: training, validation and prediction.

Sequences stay uint8 codes in host memory (110 bytes per row); each batch is gathered and
one-hot encoded on the fly, so the 4x-float one-hot tensor of the whole set (the
original's 2.9 GB bool array) never exists. Batches are GLOBAL: under a tf.distribute
strategy Keras splits each batch across the replicas, and under multi-worker training
every worker reads the same shuffled stream and keeps its own share of batches.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from dream_keras.data.sequences import reverse_complement_right_aligned

AUTOTUNE = tf.data.AUTOTUNE


def one_hot_codes(codes: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
    """[..., seq_len] codes -> [..., seq_len, 4] one-hot; N (code 4) becomes all zeros
    because tf.one_hot leaves out-of-range indices empty."""
    return tf.one_hot(tf.cast(codes, tf.int32), depth=4, dtype=dtype)


def _gather_rows(codes: np.ndarray, values: np.ndarray | None, seq_len: int,
                 reverse_complement_seed: int | None = None):
    """A tf function mapping a batch of row indices to (one-hot, target) or one-hot.

    With `reverse_complement_seed`, each row is replaced by its reverse complement with
    probability 0.5 (its target unchanged), drawn from (seed, the batch's first row index,
    batch size): the same batch always gets the same flips, so runs stay reproducible.
    """

    def gather(indices):
        index_array = indices.astype(np.int64)
        batch_codes = codes[index_array]
        if reverse_complement_seed is not None and len(index_array):
            rng = np.random.default_rng(
                [reverse_complement_seed, int(index_array[0]), len(index_array)])
            flip = rng.random(len(index_array)) < 0.5
            batch_codes[flip] = reverse_complement_right_aligned(batch_codes[flip])
        if values is None:
            return batch_codes
        return batch_codes, values[index_array]

    def to_tensors(indices):
        if values is None:
            batch_codes = tf.numpy_function(gather, [indices], tf.uint8, stateful=False)
            batch_codes.set_shape([None, seq_len])
            return one_hot_codes(batch_codes)
        batch_codes, batch_values = tf.numpy_function(
            gather, [indices], [tf.uint8, tf.float32], stateful=False)
        batch_codes.set_shape([None, seq_len])
        batch_values.set_shape([None])
        return one_hot_codes(batch_codes), tf.expand_dims(batch_values, -1)

    return to_tensors


def _finish(dataset: tf.data.Dataset, prefetch) -> tf.data.Dataset:
    options = tf.data.Options()
    # Shard by batch for multi-worker training: the source is an index range, not files.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    options.deterministic = True
    return dataset.with_options(options).prefetch(prefetch)


def training_dataset(codes: np.ndarray, targets: np.ndarray, *, batch_size: int, seed: int,
                     repeat: bool = False, reverse_complement_augment: bool = False,
                     parallel_calls=AUTOTUNE, prefetch=AUTOTUNE) -> tf.data.Dataset:
    """Shuffled (x [batch, seq_len, 4] float32, y [batch, 1] float32) batches.

    codes: uint8 [N, seq_len] of the training rows; targets: float32 [N] (standardised).
    The order is reshuffled every epoch from `seed`, so runs are reproducible. Each epoch
    covers every row exactly once (the last batch may be smaller); `repeat=True` makes
    the stream endless, for a fixed steps_per_epoch. `reverse_complement_augment` shows each
    row on a random strand (see `_gather_rows`).
    """
    codes, targets = _checked(codes, targets)
    dataset = tf.data.Dataset.range(len(codes)).shuffle(
        len(codes), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    gather = _gather_rows(codes, targets, codes.shape[1],
                          reverse_complement_seed=seed if reverse_complement_augment else None)
    dataset = dataset.batch(batch_size).map(gather, num_parallel_calls=parallel_calls)
    return _finish(dataset, prefetch)


def evaluation_dataset(codes: np.ndarray, targets: np.ndarray | None = None, *,
                       batch_size: int, parallel_calls=AUTOTUNE,
                       prefetch=AUTOTUNE) -> tf.data.Dataset:
    """Batches in row order: (x, y) with targets, x alone without (for prediction)."""
    codes, targets = _checked(codes, targets)
    dataset = tf.data.Dataset.range(len(codes)).batch(batch_size).map(
        _gather_rows(codes, targets, codes.shape[1]), num_parallel_calls=parallel_calls)
    return _finish(dataset, prefetch)


def _checked(codes, targets):
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [rows, seq_len], got shape {codes.shape}")
    if targets is not None:
        targets = np.ascontiguousarray(targets, dtype=np.float32).reshape(-1)
        if len(targets) != len(codes):
            raise ValueError(f"{len(codes)} sequences but {len(targets)} targets")
    return codes, targets
