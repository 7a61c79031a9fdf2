"""tf.data pipelines over encoded sequences: training, validation and prediction.

Sequences stay uint8 codes in host memory (110 bytes per row); each batch is gathered and
one-hot encoded on the fly, so the 4x-float one-hot tensor of the whole set (the
original's 2.9 GB bool array) never exists.

Training order (see docs/multi_device.md): the endless stream is a sequence of passes;
pass p is a permutation of the rows drawn from (seed, p) alone (stateless), cut into full
GLOBAL batches, the last N mod batch_size rows of that pass left out (different rows each
pass). Step s of the stream is therefore a pure function of (seed, s): a run resumed at
step s (`start_step`) trains exactly the batches an uninterrupted run would.

Replicas: every global batch is cut into `num_replicas` equal slices in order, replica r
(over all workers) gets slice r, and each worker gathers only its own replicas' slices
(`replica_batches`, for `strategy.distribute_datasets_from_function`). Evaluation batches
are padded with weight-0 rows to whole global batches, so every replica gets the same
number of rows and every real row counts exactly once.
"""
from __future__ import annotations

import collections
import functools
import threading

import numpy as np
import tensorflow as tf

from dream_keras.data.sequences import one_hot, reverse_complement_right_aligned

AUTOTUNE = tf.data.AUTOTUNE
# splitmix64's increment (2^64 / golden ratio): the stateless hash behind shuffling and strands.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """A stateless 64-bit mix (splitmix64's finaliser), vectorised over uint64 values."""
    z = np.asarray(values, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=64)
def _pass_keys(seed: int, pass_index: int) -> tuple:
    """Five 64-bit keys of a pass: four Feistel rounds and the strand draw."""
    base = _splitmix64(np.array([seed % 2**64], dtype=np.uint64) * _GOLDEN
                       + np.uint64(pass_index))
    return tuple(_splitmix64(base + np.uint64(r))[0] | np.uint64(1) for r in range(5))


def pass_rows(positions: np.ndarray, num_rows: int, seed: int, pass_index: int) -> np.ndarray:
    """int64 rows at `positions` of pass `pass_index`'s row order (a permutation of
    range(num_rows) drawn from (seed, pass) alone).

    A 4-round Feistel network over the next power of two with cycle walking: a true
    permutation, evaluated only at the positions asked for, so a pass costs nothing to
    start (no per-epoch stall, no index array) and any step can be computed directly.
    """
    if num_rows > 2**31:
        raise ValueError(f"{num_rows} rows: the shuffle handles up to 2^31")
    bits = max(2, int(num_rows - 1).bit_length())
    # uint32 arithmetic (wrapping): twice as fast as uint64 on a batch of positions.
    keys = [np.uint32(int(key) & 0xFFFFFFFF | 1)
            for key in _pass_keys(int(seed), int(pass_index))[:4]]

    def encrypt(x):
        # An unbalanced Feistel network: the halves swap widths every round.
        left_bits, right_bits = bits // 2, bits - bits // 2
        left, right = x >> np.uint32(right_bits), x & np.uint32((1 << right_bits) - 1)
        for key in keys:  # round function: multiply by an odd key, keep the top bits
            mixed = ((right + key) * key) >> np.uint32(32 - left_bits)
            left, right = right, left ^ mixed
            left_bits, right_bits = right_bits, left_bits
        return (left << np.uint32(right_bits)) | right

    x = encrypt(np.asarray(positions, dtype=np.uint32))
    outside = x >= num_rows
    while outside.any():  # cycle walking: the domain is < 2x num_rows
        x[outside] = encrypt(x[outside])
        outside = x >= num_rows
    return x.astype(np.int64)


def strand_flips(seed: int, pass_index: int, rows: np.ndarray) -> np.ndarray:
    """bool [len(rows)]: which rows are shown reverse-complemented in pass `pass_index`.

    A hash of (seed, pass, row), so a row's strand does not depend on which batch or
    replica it lands in: the same in any replica count, and independent between passes.
    """
    key = _pass_keys(int(seed), int(pass_index))[4]
    return (_splitmix64(rows.astype(np.uint64) ^ key) >> np.uint64(63)).astype(bool)


def _gather_rows(codes: np.ndarray, values: np.ndarray | None, seq_len: int, *,
                 batch_size: int, shuffle_seed: int | None = None,
                 reverse_complement_seed: int | None = None, augment=None):
    """A tf function mapping (step, first, count) to the one-hot rows (and targets, and
    weights) at positions step * batch_size + [first, first + count) of the stream.

    With `shuffle_seed`, positions run through each pass's permutation (`pass_rows`), a
    pass being `batches_per_pass` steps; without, positions are rows in order and those
    past the last row are padding (row 0, weight 0). With `reverse_complement_seed`, each
    row is replaced by its reverse complement with probability 0.5 (target unchanged),
    drawn by `strand_flips`: reproducible, and the same under any replica count.
    `augment(codes, step, first)` returns augmented codes (row i stays row i), before any
    reverse complement.
    """
    num_rows = len(codes)
    per_pass = batches_per_pass(num_rows, batch_size)

    def gather(step, first, count):
        step, first, count = int(step), int(first), int(count)
        if shuffle_seed is None:
            pass_index = 0
            positions = step * batch_size + first + np.arange(count, dtype=np.int64)
            weights = (positions < num_rows).astype(np.float32)
            index_array = np.where(positions < num_rows, positions, 0)
        else:
            pass_index, batch_in_pass = divmod(step, per_pass)
            positions = batch_in_pass * batch_size + first + np.arange(count, dtype=np.int64)
            index_array = pass_rows(positions, num_rows, shuffle_seed, pass_index)
            weights = np.ones(count, dtype=np.float32)
        batch_codes = codes[index_array]
        if augment is not None and count:
            batch_codes = augment(batch_codes, step, first)
        if reverse_complement_seed is not None and count:
            flip = strand_flips(reverse_complement_seed, pass_index, index_array)
            batch_codes[flip] = reverse_complement_right_aligned(batch_codes[flip])
        one_hot_batch = one_hot(batch_codes)
        if values is None:
            return one_hot_batch, weights
        return one_hot_batch, values[index_array], weights

    def to_tensors(step, first, count):
        outputs = tf.numpy_function(
            gather, [step, first, count],
            [tf.float32, tf.float32] + ([] if values is None else [tf.float32]),
            stateful=False)
        outputs[0].set_shape([None, seq_len, 4])
        for output in outputs[1:]:
            output.set_shape([None])
        x = outputs[0]
        if values is None:
            return x, outputs[1]
        return x, tf.expand_dims(outputs[1], -1), outputs[2]

    return to_tensors


def _finish(dataset: tf.data.Dataset, prefetch) -> tf.data.Dataset:
    options = tf.data.Options()
    # Each worker builds only its own share (see _slices); never re-shard it.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
    options.deterministic = True
    return dataset.with_options(options).prefetch(prefetch)


def batches_per_pass(num_rows: int, batch_size: int) -> int:
    """Full global batches in one pass over `num_rows` rows (the remainder is left out)."""
    return num_rows // batch_size


def check_replica_batch(batch_size: int, num_replicas: int) -> None:
    """ValueError unless the global batch splits into equal, non-empty replica slices."""
    if batch_size < num_replicas or batch_size % num_replicas:
        raise ValueError(f"batch_size {batch_size} must be a multiple of the {num_replicas} "
                         "replicas, so every replica gets the same number of rows")


def _slices_per_step(input_context) -> int:
    """How many replica slices of each global batch this input pipeline gathers."""
    if input_context is None:
        return 1
    return input_context.num_replicas_in_sync // input_context.num_input_pipelines


def _slices(steps: tf.data.Dataset, batch_size: int, input_context) -> tf.data.Dataset:
    """(step, first, count) of what this input pipeline gathers for each global step: the
    whole batch, or with a tf.distribute.InputContext this worker's replicas' equal slices
    in replica order (replica r of R gets rows [r, r + 1) * batch_size / R)."""
    if input_context is None:
        return steps.map(lambda step: (step, tf.constant(0, tf.int64),
                                       tf.constant(batch_size, tf.int64)))
    replicas = input_context.num_replicas_in_sync
    check_replica_batch(batch_size, replicas)
    local = _slices_per_step(input_context)
    first_replica = input_context.input_pipeline_id * local
    per_replica = batch_size // replicas
    firsts = tf.range(first_replica, first_replica + local, dtype=tf.int64) * per_replica
    return steps.flat_map(lambda step: tf.data.Dataset.from_tensor_slices(
        (tf.fill([local], step), firsts, tf.fill([local], tf.constant(per_replica, tf.int64)))))


def training_dataset(codes: np.ndarray, targets: np.ndarray, *, batch_size: int, seed: int,
                     repeat: bool = False, reverse_complement_augment: bool = False,
                     start_step: int = 0, input_context=None,
                     parallel_calls=AUTOTUNE, prefetch=AUTOTUNE,
                     augment=None) -> tf.data.Dataset:
    """Shuffled (x [batch, seq_len, 4] float32, y [batch, 1] float32) full batches.

    codes: uint8 [N, seq_len] of the training rows; targets: float32 [N] (standardised).
    Every batch is a full `batch_size`: a pass is N // batch_size batches, the N mod
    batch_size rows left out of a pass being different rows each pass. One pass without
    `repeat`, an endless stream with it (for a fixed steps_per_epoch); `start_step` starts
    at that global step (a resumed run). `reverse_complement_augment` shows each row on a
    random strand (see `strand_flips`). With a `tf.distribute.InputContext` (from
    `distribute_datasets_from_function`) the dataset yields this worker's per-replica
    slices of the same global batches. `augment(codes, step, first)`: augmented codes of
    the slice starting at row `first` of global batch `step` (see data/augment.py).
    """
    codes, targets = _checked(codes, targets)
    per_pass = batches_per_pass(len(codes), batch_size)
    if per_pass < 1:
        raise ValueError(f"{len(codes)} training rows cannot fill one batch of {batch_size}; "
                         "lower `batch_size`")
    end = 2**62 if repeat else (start_step // per_pass + 1) * per_pass
    steps = tf.data.Dataset.range(start_step, end)
    gather = _gather_rows(codes, targets, codes.shape[1], batch_size=batch_size,
                          shuffle_seed=seed,
                          reverse_complement_seed=seed if reverse_complement_augment else None,
                          augment=augment)
    batches = _slices(steps, batch_size, input_context).map(
        gather, num_parallel_calls=parallel_calls)
    return _finish(batches.map(lambda x, y, weight: (x, y)), prefetch)


class _SharedStepBatches:
    """`generate(step)`, computed once per step for all of a pipeline's replica slices
    (each slice would otherwise generate the whole global batch to keep its share: R
    replicas, R times the work). Different steps still generate in parallel; the batch is
    read-only, as it is shared."""

    def __init__(self, generate, steps_kept: int):
        self._generate = generate
        self._steps_kept = steps_kept
        self._lock = threading.Lock()
        self._entries = collections.OrderedDict()  # step -> [its lock, its batch or None]

    def __call__(self, step: int) -> np.ndarray:
        with self._lock:
            entry = self._entries.get(step)
            if entry is None:
                entry = self._entries[step] = [threading.Lock(), None]
                while len(self._entries) > self._steps_kept:
                    self._entries.popitem(last=False)
        with entry[0]:
            if entry[1] is None:
                batch = np.asarray(self._generate(step))
                batch.flags.writeable = False
                entry[1] = batch
            return entry[1]


def generated_dataset(generate, label, *, batch_size: int, seq_len: int,
                      start_step: int = 0, input_context=None, model_teacher=None,
                      parallel_calls=AUTOTUNE, prefetch=AUTOTUNE) -> tf.data.Dataset:
    """Endless (x, y [batch, 1]) batches of generated sequences and teacher labels.

    `generate(step)`: uint8 codes [batch_size, seq_len] of global batch `step`, a pure
    function of the step (so a run resumed at `start_step` sees the same batches);
    `label(codes)`: float32 [n] NumPy labels (the ridge teacher), or None. With
    `model_teacher` (teachers.ModelTeacher) y is the mean over the plausible labels of its
    models and of `label`'s, computed in the graph (ModelTeacher.labels); without one,
    `label`'s. Replica slices as training_dataset.
    """
    if _slices_per_step(input_context) > 1:
        generate = _SharedStepBatches(generate, steps_kept=64)

    def gather(step, first, count):
        batch = generate(int(step))[int(first):int(first) + int(count)]
        labels = label(batch) if label is not None else np.zeros(len(batch), np.float32)
        return one_hot(batch), labels.astype(np.float32)

    def to_tensors(step, first, count):
        x, y = tf.numpy_function(gather, [step, first, count], [tf.float32, tf.float32],
                                 stateful=False)
        x.set_shape([None, seq_len, 4])
        y.set_shape([None])
        return x, tf.expand_dims(y, -1)

    def with_models(x, y):
        return x, model_teacher.labels(x, y if label is not None else None)

    batches = _slices(tf.data.Dataset.range(start_step, 2**62), batch_size,
                      input_context).map(to_tensors, num_parallel_calls=parallel_calls)
    if model_teacher is not None:
        batches = batches.map(with_models)
    return _finish(batches, prefetch)


def evaluation_dataset(codes: np.ndarray, targets: np.ndarray | None = None, *,
                       batch_size: int, parallel_calls=AUTOTUNE,
                       prefetch=AUTOTUNE) -> tf.data.Dataset:
    """Batches in row order: (x, y) with targets, x alone without (for prediction); the
    last batch holds the remaining rows (one device; see weighted_evaluation_dataset)."""
    codes, targets = _checked(codes, targets)
    num_rows = len(codes)
    gather = _gather_rows(codes, targets, codes.shape[1], batch_size=batch_size)
    steps = tf.data.Dataset.range(-(-num_rows // batch_size))
    slices = steps.map(lambda step: (step, tf.constant(0, tf.int64),
                                     tf.minimum(tf.constant(batch_size, tf.int64), num_rows - step * batch_size)))
    drop_weight = (lambda x, y, weight: (x, y)) if targets is not None else (
        lambda x, weight: x)
    return _finish(slices.map(gather, num_parallel_calls=parallel_calls).map(drop_weight),
                   prefetch)


def evaluation_steps(num_rows: int, batch_size: int) -> int:
    """Global batches of one weighted evaluation pass (the last one padded)."""
    return -(-num_rows // batch_size)


def weighted_evaluation_dataset(codes: np.ndarray, targets: np.ndarray, *, batch_size: int,
                                input_context=None, repeat: bool = False,
                                parallel_calls=AUTOTUNE,
                                prefetch=AUTOTUNE) -> tf.data.Dataset:
    """(x, y, weight [batch]) in row order, padded to whole global batches.

    Padding rows repeat row 0 with weight 0, so a loss or metric weighted by `weight` sees
    every real row exactly once, and every replica gets batch_size / replicas rows of every
    batch (none empty, none ragged) under any row count. `repeat`: the same pass again
    and again (read `evaluation_steps` batches per evaluation: a distributed dataset has
    no length Keras could stop at).
    """
    codes, targets = _checked(codes, targets)
    if len(codes) == 0:
        raise ValueError("the evaluation set is empty")
    steps = tf.data.Dataset.range(evaluation_steps(len(codes), batch_size))
    if repeat:
        steps = steps.repeat()
    gather = _gather_rows(codes, targets, codes.shape[1], batch_size=batch_size)
    return _finish(_slices(steps, batch_size, input_context).map(
        gather, num_parallel_calls=parallel_calls), prefetch)


def _checked(codes, targets):
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [rows, seq_len], got shape {codes.shape}")
    if targets is not None:
        targets = np.ascontiguousarray(targets, dtype=np.float32).reshape(-1)
        if len(targets) != len(codes):
            raise ValueError(f"{len(codes)} sequences but {len(targets)} targets")
    return codes, targets
