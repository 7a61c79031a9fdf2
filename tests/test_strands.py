"""One window rule for both strands: training augmentation, prediction and the TensorFlow
mirrors (compiled forward, exported SavedModel) all see the same bases."""
import numpy as np
import tensorflow as tf

from dream_keras import sequence_ops
from dream_keras.data import sequences as seq
from dream_keras.dataset import training_dataset

_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def test_a_135_bp_sequence_shows_augmentation_and_prediction_the_same_reverse_window():
    rng = np.random.default_rng(5)
    sequences = ["".join(rng.choice(list("ACGT"), size=135)) for _ in range(32)]
    codes = seq.encode(sequences, 110)  # what the training cache holds
    # Prediction's strands (inference, files, variant effects use encode_strands).
    forward, reverse = seq.encode_strands(sequences, 110, both_strands=True)
    # The reverse window is the complement of the LAST 110 bases (those the forward sees).
    np.testing.assert_array_equal(reverse, seq.encode(
        [s[-110:].translate(_COMPLEMENT)[::-1] for s in sequences], 110))
    targets = np.arange(32, dtype=np.float32)  # the target names its source row
    flipped = 0
    for x, y in training_dataset(codes, targets, batch_size=32, seed=1,
                                 reverse_complement_augment=True).take(1):
        for one_x, row in zip(x.numpy(), y.numpy()[:, 0].astype(int)):
            if not np.array_equal(one_x, seq.one_hot(forward[row])):
                np.testing.assert_array_equal(one_x, seq.one_hot(reverse[row]))
                flipped += 1
    assert 4 <= flipped <= 28  # both strands were shown (~half flipped)


def test_tensorflow_mirrors_equal_the_numpy_rules():
    rng = np.random.default_rng(6)
    letters = list("ACGTNacgtn")
    sequences = ["".join(rng.choice(letters, size=int(n))) for n in rng.integers(1, 140, 60)]
    sequences += ["NNNACGT", "A" * 110, "acgtN" * 30]
    codes = seq.encode(sequences, 110)
    np.testing.assert_array_equal(sequence_ops.one_hot(codes).numpy(), seq.one_hot(codes))
    np.testing.assert_array_equal(sequence_ops.reverse_complement_right_aligned(codes).numpy(),
                                  seq.reverse_complement_right_aligned(codes))
    np.testing.assert_array_equal(
        sequence_ops.encode_strings(tf.constant(sequences), 110).numpy(), codes)
    # Served strings may hold other letters: they read as N.
    np.testing.assert_array_equal(
        sequence_ops.encode_strings(tf.constant(["AXGt-"]), 6).numpy(),
        seq.encode(["ANGtN"], 6))
    # Whitespace around a request (a trailing newline) is stripped, as predict.py strips
    # it: kept, it would read as N inside the window and shift the sequence.
    np.testing.assert_array_equal(
        sequence_ops.encode_strings(tf.constant(["ACGTAC\n", " ACGTAC\r\n", "AC GT\t"]),
                                    6).numpy(), seq.encode(["ACGTAC", "ACGTAC", "ACNGT"], 6))
