"""Where each base of the model's window sits on the reverse strand the model also sees.

The model sees the LAST seq_len bases of a string (left-padded with N); the reverse strand
(`--reverse_complement_average`) is the reverse complement of the string encoded by the
same rule, i.e. the reverse complement of its FIRST seq_len bases. A base at forward window
index p of a string of length n is string index j = p + n - L and reverse window index
r = L - 1 - j = 2L - 1 - n - p, which exists when 0 <= r < L. For n <= L every forward base
has its partner; for n > L only the bases among the first L of the string do.
"""
from __future__ import annotations

import numpy as np


def reverse_positions(lengths, seq_len: int) -> np.ndarray:
    """int64 [n, seq_len]: reverse-window index of each forward-window index, -1 where the
    forward position is padding or outside the reverse window."""
    lengths = np.asarray(lengths, dtype=np.int64)[:, None]
    forward = np.arange(seq_len)[None, :]
    reverse = 2 * seq_len - 1 - lengths - forward
    in_string = forward >= seq_len - lengths
    valid = in_string & (reverse >= 0) & (reverse < seq_len)
    return np.where(valid, reverse, -1)


def onto_forward(reverse_values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per-base values on the reverse window [n, L, 4] -> the forward window [n, L, 4]:
    position r -> p, base c -> its complement 3 - c (channels A, C, G, T reversed); zero
    where a forward base has no partner."""
    rows = np.arange(len(positions))[:, None]
    gathered = reverse_values[rows, np.maximum(positions, 0)][..., ::-1]
    return np.where((positions >= 0)[..., None], gathered, 0.0).astype(reverse_values.dtype)
