"""TensorFlow mirrors of dream_keras.data.sequences, for code that runs inside a graph.

The compiled forward (inference.py) takes uint8 codes and one-hot encodes them in the
graph, so only bytes cross into TensorFlow; the exported SavedModel (export.py) encodes
strings and builds the reverse strand without any Python of ours. Each op here follows
the NumPy rule of the same name in data/sequences.py (which owns the rules and their
documentation) and is tested equal to it (tests/test_strands.py).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from dream_keras.data.sequences import ALPHABET, N_CODE

_COMPLEMENT = (3, 2, 1, 0, N_CODE)


def one_hot(codes) -> tf.Tensor:
    """float32 [..., 4] from integer codes [...]: A, C, G, T channels; N (4) all zeros."""
    return tf.one_hot(tf.cast(codes, tf.int32), depth=len(ALPHABET), dtype=tf.float32)


def reverse_complement_right_aligned(codes) -> tf.Tensor:
    """The other strand of codes [n, seq_len]: reverse complement of the window, its
    leading-N padding moved back to the left (data.sequences' rule of the same name)."""
    codes = tf.cast(codes, tf.int32)
    seq_len = tf.shape(codes)[1]
    flipped = tf.reverse(tf.gather(tf.constant(_COMPLEMENT, tf.int32), codes), axis=[1])
    is_padding = tf.math.cumprod(tf.cast(tf.equal(codes, N_CODE), tf.int32), axis=1)
    padding = tf.reduce_sum(is_padding, axis=1, keepdims=True)
    columns = tf.math.floormod(tf.range(seq_len)[None, :] - padding, seq_len)
    return tf.gather(flipped, columns, batch_dims=1)


def _code_of_byte() -> np.ndarray:
    """int32 [256]: A/C/G/T (after upper-casing) -> 0..3; every other byte -> N (4)."""
    table = np.full(256, N_CODE, dtype=np.int32)
    for code, letter in enumerate(ALPHABET):
        table[ord(letter)] = code
    return table


def encode_strings(sequences, seq_len: int) -> tf.Tensor:
    """int32 codes [batch, seq_len] from tf.string [batch]: `encode`'s window rule (last
    seq_len bases, left-padded with N), any case. Unlike `encode`, a letter outside ACGTN
    is not an error but reads as N: a server should answer. Whitespace around a sequence
    (a request's trailing newline) is stripped first, as predict.py's readers strip it:
    kept, it would read as N inside the window and shift the sequence out of it."""
    padded = tf.strings.join(["N" * seq_len, tf.strings.upper(tf.strings.strip(sequences))])
    start = tf.strings.length(padded) - seq_len
    windows = tf.strings.substr(padded, start, tf.fill(tf.shape(start), seq_len))
    raw = tf.io.decode_raw(windows, tf.uint8, fixed_length=seq_len)
    return tf.gather(tf.constant(_code_of_byte()), tf.cast(raw, tf.int32))
