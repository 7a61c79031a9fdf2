import numpy as np
import pytest
import tensorflow as tf

from dream_keras.dataset import pass_rows, training_dataset, weighted_evaluation_dataset
from dream_keras.data.sequences import encode, one_hot
from tests.run_helpers import run_code


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


def _targets_of(dataset):
    return [y.numpy()[:, 0] for _, y in dataset]


def test_each_pass_is_full_batches_of_distinct_rows_reshuffled(rows):
    codes, targets = rows  # 103 rows, batch 10: 10 full batches a pass, 3 rows left out
    stream = _targets_of(training_dataset(codes, targets, batch_size=10, seed=5,
                                          repeat=True).take(30))
    assert {len(batch) for batch in stream} == {10}
    passes = [np.concatenate(stream[i:i + 10]) for i in (0, 10, 20)]
    for seen in passes:
        assert len(set(seen)) == 100 and set(seen) <= set(targets)
    assert (passes[0] != passes[1]).any()
    # Different rows wait for a later pass each time: 3 passes leave out different rows.
    left_out = [set(targets) - set(seen) for seen in passes]
    assert left_out[0] != left_out[1] or left_out[1] != left_out[2]
    again = _targets_of(training_dataset(codes, targets, batch_size=10, seed=5,
                                         repeat=True).take(30))
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(stream))
    other_seed = _targets_of(training_dataset(codes, targets, batch_size=10, seed=6).take(10))
    assert (np.concatenate(other_seed) != passes[0]).any()


def test_a_stream_started_at_step_k_is_the_uninterrupted_stream_from_k(rows):
    codes, targets = rows
    whole = _targets_of(training_dataset(codes, targets, batch_size=10, seed=2, repeat=True,
                                         reverse_complement_augment=True).take(25))
    for start in (1, 10, 13):
        resumed = training_dataset(codes, targets, batch_size=10, seed=2, repeat=True,
                                   reverse_complement_augment=True, start_step=start)
        resumed_x = [x.numpy() for x, _ in resumed.take(25 - start)]
        np.testing.assert_array_equal(np.concatenate(_targets_of(resumed.take(25 - start))),
                                      np.concatenate(whole[start:]))
        first = next(iter(training_dataset(codes, targets, batch_size=10, seed=2,
                                           repeat=True, reverse_complement_augment=True)
                          .skip(start).take(1)))[0].numpy()
        np.testing.assert_array_equal(resumed_x[0], first)  # the same strands too


def test_pass_rows_is_a_permutation_of_every_size():
    for num_rows in (1, 2, 3, 7, 64, 103, 4097, 100_003):
        for pass_index in (0, 1):
            order = pass_rows(np.arange(num_rows), num_rows, seed=9, pass_index=pass_index)
            np.testing.assert_array_equal(np.sort(order), np.arange(num_rows))
    a, b = (pass_rows(np.arange(1000), 1000, seed=9, pass_index=p) for p in (0, 1))
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1 and abs(np.corrcoef(np.arange(1000), a)[0, 1]) < 0.1


def test_each_worker_gathers_only_its_replicas_slices(rows):
    codes, targets = rows
    whole = _targets_of(training_dataset(codes, targets, batch_size=12, seed=4).take(3))
    for workers, replicas in ((1, 3), (2, 4), (3, 3)):
        shares = []
        for worker in range(workers):
            context = tf.distribute.InputContext(num_input_pipelines=workers,
                                                 input_pipeline_id=worker,
                                                 num_replicas_in_sync=replicas)
            shares.append(_targets_of(training_dataset(codes, targets, batch_size=12,
                                                       seed=4, input_context=context)
                                      .take(3 * replicas // workers)))
        local = replicas // workers
        for step, batch in enumerate(whole):
            slices = [shares[w][step * local + r] for w in range(workers) for r in range(local)]
            assert {len(s) for s in slices} == {12 // replicas}
            np.testing.assert_array_equal(np.concatenate(slices), batch)


def test_generated_batches_are_generated_once_per_step_for_all_replica_slices():
    """Pre-training on 4 replicas: each global batch is generated once (not once per
    replica slice), the slices put together are the one-device batch, and labels stay
    with their rows."""
    import threading

    from dream_keras.dataset import generated_dataset

    calls, lock = [], threading.Lock()

    def generate(step):
        with lock:
            calls.append(step)
        return np.random.default_rng(step).integers(0, 4, size=(16, 12)).astype(np.uint8)

    def label(codes):  # a row's label is a function of that row alone
        return (codes * np.arange(12)).sum(axis=1).astype(np.float32)

    one_device = list(generated_dataset(generate, label, batch_size=16, seq_len=12,
                                        start_step=2).take(5))
    calls.clear()
    context = tf.distribute.InputContext(num_replicas_in_sync=4)
    sliced = list(generated_dataset(generate, label, batch_size=16, seq_len=12, start_step=2,
                                    input_context=context).take(5 * 4))
    # Once per step (prefetching may have started later steps too).
    assert len(calls) == len(set(calls)) and set(calls) >= {2, 3, 4, 5, 6}, sorted(calls)
    for step, (x, y) in enumerate(one_device):
        slices = sliced[4 * step:4 * step + 4]
        assert {len(s[0]) for s in slices} == {4}
        np.testing.assert_array_equal(np.concatenate([s[0] for s in slices]), x.numpy())
        np.testing.assert_array_equal(np.concatenate([s[1] for s in slices]), y.numpy())


def test_batch_not_divisible_by_replicas_is_refused(rows):
    codes, targets = rows
    context = tf.distribute.InputContext(num_replicas_in_sync=3)
    with pytest.raises(ValueError, match="multiple of the 3 replicas"):
        training_dataset(codes, targets, batch_size=10, seed=0, input_context=context)


def test_weighted_evaluation_covers_every_row_once_under_any_replica_count(rows):
    codes, targets = rows  # 103 rows: divisible by neither the batch nor the replicas
    for replicas, batch in ((1, 8), (2, 8), (3, 12), (4, 8)):
        seen, weights, inputs, sizes = [], [], [], set()
        for worker in range(2 if replicas % 2 == 0 else 1):
            pipelines = 2 if replicas % 2 == 0 else 1
            context = tf.distribute.InputContext(num_input_pipelines=pipelines,
                                                 input_pipeline_id=worker,
                                                 num_replicas_in_sync=replicas)
            for x, y, weight in weighted_evaluation_dataset(codes, targets, batch_size=batch,
                                                            input_context=context):
                sizes.add(len(weight))
                assert x.shape[0] == len(weight) == y.shape[0]
                seen.append(y.numpy()[:, 0])
                weights.append(weight.numpy())
                inputs.append(x.numpy())
        seen, weights, inputs = (np.concatenate(seen), np.concatenate(weights),
                                 np.concatenate(inputs))
        assert sizes == {batch // replicas}  # no replica empty or ragged
        if replicas == 1:  # one device: rows in file order, N padding one-hot as zeros
            np.testing.assert_array_equal(seen[weights == 1], targets)
            np.testing.assert_array_equal(inputs[:103], one_hot(codes))
        np.testing.assert_array_equal(np.sort(seen[weights == 1]), np.sort(targets))
        assert set(np.unique(weights)) == {0.0, 1.0}
        assert (weights == 0).sum() == -(-103 // batch) * batch - 103


def test_repeat_is_endless(rows):
    codes, targets = rows
    batches = list(training_dataset(codes, targets, batch_size=50, seed=0, repeat=True).take(7))
    assert len(batches) == 7


_TWO_REPLICAS = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from dream_keras.dataset import training_dataset
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
codes = np.random.default_rng(0).integers(0, 5, size=(43, 12)).astype(np.uint8)
targets = np.arange(43, dtype=np.float32)
whole = [y.numpy()[:, 0] for _, y in training_dataset(codes, targets, batch_size=8, seed=0)]
dataset = strategy.distribute_datasets_from_function(lambda context: training_dataset(
    codes, targets, batch_size=8, seed=0, input_context=context))
steps = 0
for (x, y), batch in zip(dataset, whole):
    parts = strategy.experimental_local_results(y)
    assert [tuple(p.shape) for p in parts] == [(4, 1), (4, 1)], parts
    assert [p.device.endswith(f"CPU:{i}") for i, p in enumerate(parts)] == [True, True]
    assert list(np.concatenate([p.numpy()[:, 0] for p in parts])) == list(batch)
    steps += 1
assert steps == 5, steps
print("ok")
"""


def test_global_batch_is_split_across_two_replicas():
    assert run_code(_TWO_REPLICAS).stdout.strip() == "ok"


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
