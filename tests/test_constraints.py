"""SpectralNormCap and NonPositiveCellFeedback: projections (exact where already within
them), serialisable, off by default; the second bounds a swish LSTM's state whatever its
other weights. That the package's training path applies it after every update, also on
replicas, and that a saved model keeps it: tests/test_distributed_replicas.py (three_xla)."""
import keras
import numpy as np
import pytest

from dream_keras import build_model
from dream_keras.constraints import NonPositiveCellFeedback, SpectralNormCap
from tests.conftest import SMALL_MODEL


def _sigma(w) -> float:
    return float(np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)[0])


def test_cap_scales_a_larger_matrix_onto_it_and_leaves_a_smaller_one_exactly():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 16)).astype("float32")
    large = w * (2.5 / _sigma(w))
    capped = keras.ops.convert_to_numpy(SpectralNormCap(0.75)(large))
    assert _sigma(capped) == pytest.approx(0.75, rel=1e-5)
    np.testing.assert_allclose(capped, large * (0.75 / 2.5), rtol=1e-5)  # same direction
    small = w * (0.5 / _sigma(w))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(SpectralNormCap(0.75)(small)),
                                  small)


def test_cap_round_trips_and_refuses_nonpositive_values():
    restored = keras.constraints.deserialize(
        keras.constraints.serialize(SpectralNormCap(0.6)))
    assert isinstance(restored, SpectralNormCap) and restored.get_config() == {"max_norm": 0.6}
    with pytest.raises(ValueError, match="max_norm must be positive"):
        SpectralNormCap(0.0)
    with pytest.raises(ValueError, match="lstm_recurrent_norm_cap"):
        build_model(**SMALL_MODEL, lstm_recurrent_norm_cap=-1.0)
    # Off by default: the faithful model has no constraint.
    lstm = build_model(**SMALL_MODEL).get_layer("bilstm")
    assert lstm.forward_layer.cell.recurrent_constraint is None



UNITS = 4


def _cell_block(w):
    return np.asarray(w)[:, 2 * UNITS:3 * UNITS]


def test_nonpositive_cell_feedback_zeroes_only_the_cell_blocks_positive_entries():
    w = np.random.default_rng(1).normal(size=(UNITS, 4 * UNITS)).astype("float32")
    projected = keras.ops.convert_to_numpy(NonPositiveCellFeedback()(w))
    np.testing.assert_array_equal(_cell_block(projected), np.minimum(_cell_block(w), 0))
    gates = np.r_[0:2 * UNITS, 3 * UNITS:4 * UNITS]
    np.testing.assert_array_equal(projected[:, gates], w[:, gates])
    np.testing.assert_array_equal(  # a compliant kernel is left exactly as it is
        keras.ops.convert_to_numpy(NonPositiveCellFeedback()(projected)), projected)
    capped = keras.ops.convert_to_numpy(NonPositiveCellFeedback(max_norm=0.25)(w * 10))
    assert _sigma(capped) == pytest.approx(0.25, rel=1e-5) and _cell_block(capped).max() <= 0
    restored = keras.constraints.deserialize(
        keras.constraints.serialize(NonPositiveCellFeedback(0.5)))
    assert restored.get_config() == {"max_norm": 0.5}
    with pytest.raises(ValueError, match=r"\[units, 4 \* units\], got shape \(4, 12\)"):
        NonPositiveCellFeedback()(w[:, :12])
    with pytest.raises(ValueError, match="max_norm must be 0"):
        NonPositiveCellFeedback(-1.0)


def test_nonpositive_cell_feedback_bounds_the_swish_lstm_state_linearly():
    # Gates held open by their biases (forget gate at 1) and a cell input fed back through
    # mostly positive recurrent weights: unconstrained, the state grows by a factor per
    # base. Projected, the cell input is bounded by each base's input alone, so the output
    # stays within steps * (largest cell input): the bound NonPositiveCellFeedback's
    # docstring derives, whatever the gates' own recurrent weights (here large) do.
    rng = np.random.default_rng(7)
    steps, features = 110, 6
    inputs = rng.normal(size=(8, steps, features)).astype("float32")
    kernel = rng.normal(scale=0.3, size=(features, 4 * UNITS)).astype("float32")
    recurrent = np.zeros((UNITS, 4 * UNITS), "float32")
    recurrent[:, 2 * UNITS:3 * UNITS] = rng.normal(loc=0.3, scale=0.5, size=(UNITS, UNITS))
    bias = np.r_[np.full(UNITS, 4.0), np.full(UNITS, 6.0), np.zeros(UNITS),
                 np.full(UNITS, 4.0)].astype("float32")

    def largest_output(recurrent_kernel):
        lstm = keras.layers.LSTM(UNITS, activation="swish", return_sequences=True)
        lstm.build((None, steps, features))
        lstm.set_weights([kernel, recurrent_kernel, bias])
        return float(np.abs(keras.ops.convert_to_numpy(lstm(inputs))).max())

    assert largest_output(recurrent) > 1e20  # the runaway this guards against
    gates = rng.normal(scale=2.0, size=recurrent.shape).astype("float32")
    gates[:, 2 * UNITS:3 * UNITS] = 0
    projected = keras.ops.convert_to_numpy(NonPositiveCellFeedback()(recurrent + gates))
    assert _cell_block(projected).min() < 0  # not a trivially zero block
    swish_min = 0.2785  # |min swish|: the most negative an output h = o swish(c) can be
    cell_input = (inputs @ kernel[:, 2 * UNITS:3 * UNITS]
                  + swish_min * np.abs(_cell_block(projected)).sum(axis=0))
    per_base = keras.ops.convert_to_numpy(keras.activations.swish(cell_input)).max()
    assert largest_output(projected) <= steps * per_base


def test_build_model_projects_both_directions_from_the_start():
    lstm = build_model(**SMALL_MODEL, lstm_nonpositive_cell_feedback=True).get_layer("bilstm")
    for direction in (lstm.forward_layer, lstm.backward_layer):
        assert isinstance(direction.cell.recurrent_constraint, NonPositiveCellFeedback)
        assert _cell_block(direction.cell.recurrent_kernel.numpy()).max() == 0.0
    plain = build_model(**SMALL_MODEL).get_layer("bilstm").forward_layer.cell
    assert _cell_block(plain.recurrent_kernel.numpy()).max() > 0  # orthogonal start
