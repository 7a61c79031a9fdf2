import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from dream_keras.dataset import evaluation_dataset, training_dataset
from dream_keras.data.sequences import encode, one_hot


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, size=(103, 12)).astype(np.uint8)
    targets = rng.normal(size=103).astype(np.float32)
    return codes, targets


def test_training_batches_shapes_dtypes_and_one_hot(rows):
    codes, targets = rows
    x, y = next(iter(training_dataset(codes, targets, batch_size=16, seed=1)))
    assert x.shape == (16, 12, 4) and x.dtype == tf.float32
    assert y.shape == (16, 1) and y.dtype == tf.float32
    # Each batch row is the one-hot of the source row whose target it carries.
    for one_x, one_y in zip(x.numpy(), y.numpy()[:, 0]):
        source = int(np.flatnonzero(targets == one_y)[0])
        np.testing.assert_array_equal(one_x, one_hot(codes[source]))


def test_every_row_once_per_epoch_and_reshuffled(rows):
    codes, targets = rows
    dataset = training_dataset(codes, targets, batch_size=10, seed=5)
    epochs = [np.concatenate([y.numpy()[:, 0] for _, y in dataset]) for _ in range(2)]
    for seen in epochs:
        np.testing.assert_array_equal(np.sort(seen), np.sort(targets))
    assert (epochs[0] != epochs[1]).any()
    repeated = [np.concatenate([y.numpy()[:, 0] for _, y in training_dataset(
        codes, targets, batch_size=10, seed=5)]) for _ in range(1)]
    np.testing.assert_array_equal(repeated[0], epochs[0])  # same seed, same order


def test_repeat_is_endless(rows):
    codes, targets = rows
    batches = list(training_dataset(codes, targets, batch_size=50, seed=0, repeat=True).take(7))
    assert len(batches) == 7


def test_evaluation_keeps_order_and_n_is_zero():
    codes = encode(["ACGT", "NNGA", "T"], seq_len=4)
    batches = list(evaluation_dataset(codes, batch_size=2))
    x = np.concatenate([b.numpy() for b in batches])
    np.testing.assert_array_equal(x, one_hot(codes))
    assert x[1, :2].sum() == 0 and x[2, :3].sum() == 0


_TWO_REPLICAS = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from dream_keras.dataset import training_dataset
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
codes = np.random.default_rng(0).integers(0, 5, size=(40, 12)).astype(np.uint8)
dataset = training_dataset(codes, np.arange(40, dtype=np.float32), batch_size=8, seed=0)
seen = []
for x, y in strategy.experimental_distribute_dataset(dataset):
    parts = strategy.experimental_local_results(y)
    assert [tuple(p.shape) for p in parts] == [(4, 1), (4, 1)], parts
    seen += [v for p in parts for v in p.numpy()[:, 0]]
assert sorted(seen) == list(range(40)), seen
print("ok")
"""


def test_global_batch_is_split_across_two_replicas():
    result = subprocess.run([sys.executable, "-c", _TWO_REPLICAS], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_mismatched_lengths_refused(rows):
    codes, targets = rows
    with pytest.raises(ValueError, match="103 sequences but 5 targets"):
        training_dataset(codes, targets[:5], batch_size=8, seed=0)


def test_reverse_complement_augmentation_keeps_labels_with_their_sequences():
    rng = np.random.default_rng(4)
    sequences = ["".join(rng.choice(list("ACGT"), size=int(n))) for n in rng.integers(6, 13, 64)]
    sequences[3] = "ACNGT"  # an N inside, and left padding (length < 12)
    codes = encode(sequences, seq_len=12)
    targets = np.arange(64, dtype=np.float32)  # the target names its source row
    complement = str.maketrans("ACGTN", "TGCAN")
    flipped = kept = 0
    for x, y in training_dataset(codes, targets, batch_size=16, seed=3,
                                 reverse_complement_augment=True):
        for one_x, one_y in zip(x.numpy(), y.numpy()[:, 0]):
            source = sequences[int(one_y)]
            other_strand = one_hot(encode([source[::-1].translate(complement)], seq_len=12)[0])
            if np.array_equal(one_x, one_hot(codes[int(one_y)])):
                kept += 1
            else:
                np.testing.assert_array_equal(one_x, other_strand)
                flipped += 1
    assert flipped + kept == 64 and 16 <= flipped <= 48  # ~half, binomial(64, 0.5)
