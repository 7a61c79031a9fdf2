"""PearsonR: whole-set Pearson r as a streaming keras Metric (float64 sums).

The original logged a batch-averaged r squared under the name 'Pearson'. PearsonR
accumulates float64 sums over EVERY row it sees and computes Pearson r (or r squared) of
the whole set from them, on the same predictions Keras uses for val_loss: one validation
pass per epoch, under any strategy (the sums of all replicas and workers are added before
the division, so every worker reads the same number). Spearman needs the ranks of all
predictions, which no sum gives exactly, so training logs no val_spearman; evaluate.py
computes it on a saved model.

dream_keras.model imports this module, so a compiled `.keras` file loads after
`import dream_keras.model`.
"""
from __future__ import annotations

import keras
from keras import ops

# The sums PearsonR keeps, all float64 and weighted by the sample weight.
_SUMS = ("n", "sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy")
# A side whose n*sum_xx - sum_x^2 is below this share of n*sum_xx is constant.
CONSTANT_SIDE = 1e-12


@keras.saving.register_keras_serializable(package="dream_keras")
class PearsonR(keras.metrics.Metric):
    """Pearson r of predictions (x) and targets (y) over all rows seen since reset;
    r squared with `squared=True`. NaN for fewer than 2 rows or a constant side.

    Rows with sample weight 0 (evaluation padding) are left out; weights are meant to be
    0 or 1. float64 sums keep 1e-5 agreement with scipy.stats.pearsonr over 100k rows
    while the values' mean is within about 1e4 of their spread (standardised targets and
    predictions are; raw sums cannot be shifted per replica and still add up).
    """

    def __init__(self, name="pearson", squared=False, **kwargs):
        kwargs.pop("dtype", None)  # always float64 (get_config writes it out)
        super().__init__(name=name, dtype="float64", **kwargs)
        self.squared = bool(squared)
        self.sums = {key: self.add_variable(shape=(), initializer="zeros", dtype="float64",
                                            name=key) for key in _SUMS}

    def update_state(self, y_true, y_pred, sample_weight=None):
        x = ops.reshape(ops.cast(y_pred, "float64"), [-1])
        y = ops.reshape(ops.cast(y_true, "float64"), [-1])
        w = (ops.ones_like(x) if sample_weight is None
             else ops.reshape(ops.cast(sample_weight, "float64"), [-1]))
        terms = {"n": w, "sum_x": w * x, "sum_y": w * y, "sum_xx": w * x * x,
                 "sum_yy": w * y * y, "sum_xy": w * x * y}
        for key, variable in self.sums.items():
            variable.assign_add(ops.sum(terms[key]))

    def result(self):
        n, sx, sy, sxx, syy, sxy = (ops.convert_to_tensor(self.sums[key]) for key in _SUMS)
        covariance = n * sxy - sx * sy
        variance_x, variance_y = n * sxx - sx * sx, n * syy - sy * sy
        # Rounding leaves a constant side's n*sxx - sx^2 a tiny number of either sign
        # (r came out as +-1e-10, which a collapsed model's epoch then scored as): below
        # CONSTANT_SIDE of n*sxx it is taken for 0. A real spread that small needs a mean
        # a million times the spread: outputs on the standardised scale are far from it.
        valid = ops.logical_and(
            n >= 2, ops.logical_and(variance_x > CONSTANT_SIDE * n * sxx,
                                    variance_y > CONSTANT_SIDE * n * syy))
        variances = variance_x * variance_y
        r = ops.where(valid, covariance / ops.sqrt(ops.where(valid, variances, 1.0)),
                      ops.cast(float("nan"), "float64"))
        return r * r if self.squared else r

    def reset_state(self):
        for variable in self.sums.values():
            variable.assign(ops.zeros((), "float64"))

    def get_config(self):
        return {**super().get_config(), "squared": self.squared}


def pearson_metrics() -> list:
    """The compiled metrics whose validation values are val_pearson and val_pearson_r2."""
    return [PearsonR(name="pearson"), PearsonR(name="pearson_r2", squared=True)]
