"""Enformer's relative-position features and relative shift, for RelativeMultiHeadAttention.

The features depend only on the sequence length T and the feature count F, so they are
computed once, in NumPy float64, when the attention layer is built, and enter the graph as
a constant (no `lgamma` op at run time, same numbers under XLA and on every device).
Definitions: Enformer's attention_module.py (Avsec et al. 2021), checked against the
reference numbers in tests/data/enformer_attention.npz (see tests/data/README.md).
"""
from __future__ import annotations

import math

import numpy as np
from keras import ops

# Three families (exponential, central mask, gamma), each also multiplied by sign(d):
# F must be a multiple of 6 for the basis functions to split evenly.
FEATURE_FAMILIES = 3
COMPONENTS_PER_BASIS = 2 * FEATURE_FAMILIES
MIN_HALF_LIFE_LOG2 = 3.0
GAMMA_EPSILON = 1e-8


def relative_distances(seq_len: int) -> np.ndarray:
    """Distances d = -(T-1) .. T-1 as float64 [2T-1]; column c stands for d = c - (T-1)."""
    return np.arange(-seq_len + 1, seq_len, dtype=np.float64)


def exponential_features(abs_distances: np.ndarray, seq_len: int, n: int) -> np.ndarray:
    """exp(-ln2 |d| / h_i), half-lives h_i = 2^linspace(3, log2 T, n): [2T-1, n]."""
    half_lives = 2.0 ** np.linspace(MIN_HALF_LIFE_LOG2, math.log2(seq_len), n)
    return np.exp(-math.log(2.0) * abs_distances[:, None] / half_lives[None, :])


def central_mask_features(abs_distances: np.ndarray, n: int) -> np.ndarray:
    """1 where |d| < w_i, widths w_i = 2^i - 1 for i = 1..n: [2T-1, n]."""
    widths = 2.0 ** np.arange(1, n + 1) - 1.0
    return (widths[None, :] > abs_distances[:, None]).astype(np.float64)


def _gamma_pdf(x: np.ndarray, concentration: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Gamma density; (a-1)·log x follows xlogy (0 when a = 1), so x = 0 gives a finite 0."""
    with np.errstate(divide="ignore"):
        log_x = np.log(x)
    power_term = np.where(concentration == 1.0, 0.0, (concentration - 1.0) * log_x)
    log_normaliser = np.array([math.lgamma(a) for a in concentration.ravel()]).reshape(
        concentration.shape) - concentration * np.log(rate)
    return np.exp(power_term - rate * x - log_normaliser)


def gamma_features(abs_distances: np.ndarray, seq_len: int, n: int) -> np.ndarray:
    """Gamma densities with means spread over [T/n, T], each column scaled to max 1: [2T-1, n]."""
    stddev = seq_len / (2.0 * n)
    means = np.linspace(seq_len / n, seq_len, n)
    concentration = (means / stddev) ** 2
    rate = means / stddev**2
    densities = _gamma_pdf(abs_distances[:, None], concentration[None, :], rate[None, :])
    densities = densities + GAMMA_EPSILON
    return densities / densities.max(axis=0, keepdims=True)


def relative_position_features(seq_len: int, num_features: int) -> np.ndarray:
    """All F asymmetric features for distances -(T-1)..T-1, float32 [2T-1, F].

    Layout: [exponential n | central mask n | gamma n | the same 3n times sign(d)], with
    n = F / 6, the order of the reference (and of Enformer's `positional_features_all`).
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    if num_features < COMPONENTS_PER_BASIS or num_features % COMPONENTS_PER_BASIS:
        raise ValueError(
            f"num_features must be a positive multiple of {COMPONENTS_PER_BASIS}, "
            f"got {num_features}")
    n = num_features // COMPONENTS_PER_BASIS
    distances = relative_distances(seq_len)
    abs_distances = np.abs(distances)
    symmetric = np.concatenate([
        exponential_features(abs_distances, seq_len, n),
        central_mask_features(abs_distances, n),
        gamma_features(abs_distances, seq_len, n),
    ], axis=-1)
    features = np.concatenate([symmetric, np.sign(distances)[:, None] * symmetric], axis=-1)
    return features.astype(np.float32)


def relative_shift(logits):
    """Re-index relative logits by key: [B, H, T, 2T-1] -> [B, H, T, T].

    shifted[..., i, j] = logits[..., i, j - i + T - 1], i.e. query i looks up the column of
    distance j - i. Done as in Transformer-XL (pad one zero column, reshape so each row
    slides by one, slice), which needs only static H and T and has a cheap gradient.
    """
    num_heads, seq_len, num_distances = logits.shape[1], logits.shape[2], logits.shape[3]
    padded = ops.concatenate([ops.zeros_like(logits[..., :1]), logits], axis=-1)
    slid = ops.reshape(padded, (-1, num_heads, num_distances + 1, seq_len))[:, :, 1:, :]
    shifted = ops.reshape(slid, (-1, num_heads, seq_len, num_distances))
    return shifted[..., : (num_distances + 2) // 2]


def relative_distance_index(seq_len: int) -> np.ndarray:
    """int32 [T, T]: for query i and key j, the column of distance j - i among the 2T-1.

    index[i, j] = j - i + T - 1, so `take(r, index, axis=0)` turns the per-distance
    projections r [2T-1, ...] into per-(query, key) ones [T, T, ...]: the same numbers the
    relative shift picks out of [B, H, T, 2T-1] logits, gathered once per batch instead of
    computing and shifting all 2T-1 distances for every sequence.
    """
    positions = np.arange(seq_len, dtype=np.int32)
    return positions[None, :] - positions[:, None] + np.int32(seq_len - 1)
