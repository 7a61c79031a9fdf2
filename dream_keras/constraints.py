"""SpectralNormCap: a weight constraint that keeps a matrix's largest singular value at or
below a cap, for the swish LSTM's recurrent kernel (an opt-in training constraint; the
faithful model has none).

Why: with swish for both the cell input and the output, nothing bounds the LSTM's state.
Once the gates saturate open, the cell feeds itself through the recurrent kernel and grows
by a constant factor per base (measured on the recipe's seed-2 explosion: x1.4 per step
from base ~40, 1.4e10 at base 110, recurrent kernel spectral norm 1.0; the same weights
with that kernel scaled by 0.75 stayed below 17). docs/small_data.md, "Divergence".
Keras applies constraints after each optimizer update (`variable.constraint`), so the
forward pass and the saved model are unchanged in form; only reachable weights are.
"""
from __future__ import annotations

import keras
from keras import ops

from dream_keras.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpectralNormCap(keras.constraints.Constraint):
    """w * min(1, max_norm / sigma_max(w)) for a 2-D weight: a projection (weights already
    within the cap are left exactly as they are)."""

    def __init__(self, max_norm: float):
        if not max_norm > 0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        self.max_norm = float(max_norm)

    def __call__(self, w):
        sigma = ops.max(ops.svd(ops.cast(w, "float32"), compute_uv=False))
        scale = ops.minimum(1.0, self.max_norm / ops.maximum(sigma, 1e-12))
        return w * ops.cast(scale, w.dtype)

    def get_config(self):
        return {"max_norm": self.max_norm}


@keras.saving.register_keras_serializable(package=PACKAGE)
class NonPositiveCellFeedback(keras.constraints.Constraint):
    """Sets the positive entries of an LSTM recurrent kernel's cell-input block to 0 (a
    projection: a kernel that already complies is left exactly as it is); optionally then
    scales the whole kernel down to `max_norm` (SpectralNormCap's projection; scaling keeps
    the signs).

    Why: the cap only slows the swish LSTM's runaway state; this stops it. The cell is
    c_t = f c_{t-1} + i swish(x W_c + h_{t-1} U_c + b_c) with h = o swish(c) >= -0.279.
    With U_c <= 0, h U_c <= 0.279 * (column sums of |U_c|), so the cell input is bounded by
    the current base's input alone, and |c| can grow at most linearly along a sequence,
    whatever the gates do (a saturated forget gate, which defeats any cap, included).
    The kernel is [units, 4 * units] in Keras' gate order i, f, c, o.
    """

    def __init__(self, max_norm: float = 0.0):
        if max_norm < 0:
            raise ValueError(f"max_norm must be 0 (no cap) or positive, got {max_norm}")
        self.max_norm = float(max_norm)

    def __call__(self, w):
        w = ops.convert_to_tensor(w)
        units = w.shape[0]
        if w.shape[1] != 4 * units:
            raise ValueError("NonPositiveCellFeedback expects an LSTM recurrent kernel "
                             f"[units, 4 * units], got shape {tuple(w.shape)}")
        gates_i_f, cell, gate_o = w[:, :2 * units], w[:, 2 * units:3 * units], w[:, 3 * units:]
        w = ops.concatenate([gates_i_f, ops.minimum(cell, 0.0), gate_o], axis=1)
        return SpectralNormCap(self.max_norm)(w) if self.max_norm else w

    def get_config(self):
        return {"max_norm": self.max_norm}
