"""SpectralNormCap: a projection onto the cap (exact where already within it), serialisable,
off by default. That the package's training path applies it after every update, also on
replicas, and that a saved model keeps it: tests/test_distributed_replicas.py (three_xla)."""
import keras
import numpy as np
import pytest

from dream_keras import build_model
from dream_keras.constraints import SpectralNormCap
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

