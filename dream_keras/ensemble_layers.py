"""How a one-file ensemble combines its members: `PlausibleMean`, the mean of the members'
outputs that are plausible (dream_keras.plausibility), inside the .keras file."""
from __future__ import annotations

import keras
from keras import ops

from dream_keras.layers import PACKAGE


def plausible_mean(stacked, low: float, high: float):
    """(mean over axis 0 of the entries of `stacked` inside [low, high], their count): the
    one rule for averaging several models' outputs (PlausibleMean here; model teachers'
    labels, teachers.ModelTeacher). NaN is never inside; where no entry is, the mean is 0
    and the count 0, for the caller's fallback."""
    inside = ops.logical_and(ops.greater_equal(stacked, low), ops.less_equal(stacked, high))
    count = ops.sum(ops.cast(inside, stacked.dtype), axis=0)
    total = ops.sum(ops.where(inside, stacked, ops.zeros_like(stacked)), axis=0)
    return total / ops.maximum(count, 1.0), count


@keras.saving.register_keras_serializable(package=PACKAGE)
class PlausibleMean(keras.layers.Layer):
    """[batch, 1] outputs (standardised, one per member and strand) -> [batch, 1]: their
    mean over the outputs inside [low, high], the plausible range on the standardised
    scale. While every output is inside it, exactly the plain mean; an output outside it
    (a member exploding on a rare input: measured, -2.0e10 on a 0-17 scale) or NaN is left
    out of that sequence's mean. Where no output is plausible, the plain mean (the
    commands refuse it when it is implausible or NaN, as it nearly always is)."""

    def __init__(self, low: float, high: float, **kwargs):
        super().__init__(**kwargs)
        if not low < high:
            raise ValueError(f"PlausibleMean needs low < high, got {low}, {high}")
        self.low, self.high = float(low), float(high)

    def call(self, inputs):
        stacked = ops.stack(list(inputs), axis=0)  # [members, batch, 1]
        mean, count = plausible_mean(stacked, self.low, self.high)
        return ops.where(count > 0, mean, ops.mean(stacked, axis=0))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}
