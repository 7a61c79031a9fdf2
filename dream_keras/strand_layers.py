"""The other strand inside a model: `ReverseComplementWindow` lets an ensemble file average
both strands without any code outside the .keras file."""
from __future__ import annotations

import keras
from keras import ops

from dream_keras.errors import ConfigurationError
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


def averages_both_strands(model: keras.Model) -> bool:
    """Whether `model` holds a ReverseComplementWindow (an ensemble file written with both
    strands), at any depth of nested models."""
    layers = list(getattr(model, "layers", []))
    while layers:
        layer = layers.pop()
        if isinstance(layer, ReverseComplementWindow):
            return True
        layers.extend(getattr(layer, "layers", []))
    return False


def refuse_second_strand_average(model: keras.Model, source=None) -> None:
    """Averaging the strands outside a model that averages them inside is not harmless:
    the reverse-strand rule counts leading N as padding, so for a sequence that ends in N
    it does not give the sequence back, and the result shifts (measured: up to 0.37).
    `source`: the model file, named in the error (else the model's name)."""
    if averages_both_strands(model):
        raise ConfigurationError(
            f"{source or model.name}: the model already averages both strands (an ensemble "
            "written with both strands); leave out `reverse_complement_average=True`, which "
            "would average them a second time")
