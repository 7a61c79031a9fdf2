"""The other strand inside a model: `ReverseComplementWindow` lets an ensemble file average
both strands without any code outside the .keras file."""
from __future__ import annotations

import keras
from keras import ops

from dream_keras.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReverseComplementWindow(keras.layers.Layer):
    """one-hot [batch, seq_len, 4] (A, C, G, T; N all zeros) -> the reverse strand of the
    same window, encoded as every input is: the reverse complement, with the leading N
    padding of a short sequence moved back to the left (the rule of
    data.sequences.reverse_complement_right_aligned, which reverse-complement
    augmentation and strand-averaged prediction use: data.sequences.encode_strands). For a
    sequence no longer than seq_len this is what encoding the reverse-complemented string
    gives; for a longer one the model holds its last seq_len bases, and this is their
    reverse complement, the package's one window rule (docs/data.md)."""

    def call(self, inputs):
        seq_len = ops.shape(inputs)[1]
        # Complement = channels reversed (A<->T, C<->G); N (all zeros) stays N.
        flipped = ops.flip(ops.flip(inputs, axis=1), axis=2)
        is_n = ops.cast(ops.all(ops.equal(inputs, 0), axis=-1), "int32")  # [batch, L]
        padding = ops.sum(ops.cumprod(is_n, axis=1), axis=1, keepdims=True)  # leading Ns
        # Roll each row right by its padding: output column j reads flipped column j - p.
        columns = ops.mod(ops.expand_dims(ops.arange(seq_len), 0) - padding, seq_len)
        columns = ops.broadcast_to(ops.expand_dims(columns, -1), ops.shape(inputs))
        return ops.take_along_axis(flipped, columns, axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape
