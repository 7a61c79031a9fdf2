"""Whole-set correlations: agreement with independent NumPy, and NaN where none exists."""
import math

import numpy as np
import pytest

from dream_keras.metrics import correlation_summary, pearson_r, spearman_rho


def test_correlations_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200)
    y = x + rng.standard_normal(200)
    assert pearson_r(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731  (no ties in random floats)
    assert spearman_rho(x, y) == pytest.approx(np.corrcoef(ranks(x), ranks(y))[0, 1], abs=1e-12)
    summary = correlation_summary(x, y)
    assert summary["n"] == 200 and summary["pearson_r2"] == pytest.approx(summary["pearson"] ** 2)


@pytest.mark.parametrize("predicted", [[1.0, np.nan, 3.0, 4.0], [1.0, np.inf, 3.0, 4.0],
                                       [2.0, 2.0, 2.0, 2.0], [1.0]])
def test_no_correlation_without_finite_varying_values(predicted):
    measured = np.arange(len(predicted), dtype=float)
    assert math.isnan(pearson_r(predicted, measured))
    assert math.isnan(spearman_rho(predicted, measured))
    assert math.isnan(pearson_r(measured, predicted))


def test_mismatched_sizes_refused():
    with pytest.raises(ValueError, match="3 values but measured has 2"):
        pearson_r([1, 2, 3], [1, 2])


@pytest.mark.parametrize("constant", [1 / 3, -1.3, 0.1, 1e3, 0.0])
def test_the_streaming_metric_gives_no_correlation_for_a_constant_side(constant):
    """Raw sums left a constant side's variance at +-1e-16 of its scale, and r at +-1e-10:
    a collapsed model's epoch scored as a real val_pearson (best over a negative one)."""
    from dream_keras.streaming_metrics import PearsonR

    rng = np.random.default_rng(1)
    varying = rng.standard_normal(10_007)
    for predicted, measured in ((np.full(varying.size, constant), varying),
                                (varying, np.full(varying.size, constant))):
        metric = PearsonR()
        for start in range(0, varying.size, 1024):
            metric.update_state(measured[start:start + 1024], predicted[start:start + 1024])
        assert math.isnan(float(metric.result())), (constant, float(metric.result()))
    metric = PearsonR()  # a real, weak correlation is still one
    weak = varying + rng.standard_normal(varying.size) * 30
    metric.update_state(varying, weak)
    assert float(metric.result()) == pytest.approx(np.corrcoef(weak, varying)[0, 1], abs=1e-9)
