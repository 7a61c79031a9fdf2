"""Correlation metrics on whole sets (NumPy/SciPy): the numbers the DREAM challenge ranks by.

The original logged a batch-averaged r squared under the name 'Pearson'; these functions
compute Pearson r, r squared and Spearman rho over every row at once.

One vocabulary everywhere (metrics.json, dream_score.json, history.csv, the training
logs): METRIC_NAMES, with a `val_` prefix for the validation set in training.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

METRIC_NAMES = {
    "n": "number of rows (or pairs) scored",
    "mse": "mean squared error (standardised targets); history.csv's loss / val_loss "
           "add the L2 penalty to it",
    "r2": "coefficient of determination 1 - SSE/SST",
    "pearson": "Pearson r over the whole set (history.csv: val_pearson; pearson = the "
               "epoch's training rows, in training mode)",
    "pearson_r2": "Pearson r squared (history.csv: val_pearson_r2; the DREAM Pearson score)",
    "spearman": "Spearman rho over the whole set (metrics.json, dream_score.json; not in "
                "history.csv: ranks need every prediction, which training's streaming "
                "metric does not keep)",
}


def _paired(predicted, measured) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as float64 [n]; a ValueError when their sizes differ."""
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    measured = np.asarray(measured, dtype=np.float64).reshape(-1)
    if predicted.shape != measured.shape:
        raise ValueError(f"predicted has {predicted.size} values but measured has {measured.size}")
    return predicted, measured


def _undefined(predicted: np.ndarray, measured: np.ndarray) -> bool:
    """True when no correlation exists: n < 2, a constant side, or a non-finite value
    (a diverged model's NaN must read as NaN, not as a number SciPy made up)."""
    return (predicted.size < 2 or not (np.isfinite(predicted).all() and
                                       np.isfinite(measured).all())
            or np.ptp(predicted) == 0 or np.ptp(measured) == 0)


def pearson_r(predicted, measured) -> float:
    """Pearson correlation over all rows; NaN when either side is constant, holds a
    non-finite value, or n < 2."""
    predicted, measured = _paired(predicted, measured)
    if _undefined(predicted, measured):
        return float("nan")
    return float(stats.pearsonr(predicted, measured)[0])


def spearman_rho(predicted, measured) -> float:
    """Spearman rank correlation over all rows (ties get average ranks); NaN in the same
    cases as pearson_r (SciPy would rank an infinity as the largest value)."""
    predicted, measured = _paired(predicted, measured)
    if _undefined(predicted, measured):
        return float("nan")
    return float(stats.spearmanr(predicted, measured)[0])


def correlation_summary(predicted, measured) -> dict:
    """{'pearson': r, 'pearson_r2': r**2, 'spearman': rho, 'n': n}."""
    r = pearson_r(predicted, measured)
    return {
        "pearson": r,
        "pearson_r2": r * r,
        "spearman": spearman_rho(predicted, measured),
        "n": int(np.asarray(predicted).size),
    }
