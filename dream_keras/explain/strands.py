"""Where each base of the model's window sits on the reverse strand the model also sees.

The model sees the LAST seq_len bases of a string (left-padded with N); the reverse strand
(`--reverse_complement_average`) is the package's one rule,
data/sequences.reverse_complement_right_aligned: the reverse complement of exactly that
window, its N padding kept on the left. With pad = max(L - n, 0) for a string of length n,
the base at forward window index p (p >= pad) sits at reverse window index
r = pad + L - 1 - p; every forward base has its partner. (A string whose window starts
with N letters: the rule counts those as padding too, so its mapping shifts; such inputs
are rare and their N positions carry no attribution.)
"""
from __future__ import annotations

import numpy as np


def reverse_positions(lengths, seq_len: int) -> np.ndarray:
    """int64 [n, seq_len]: reverse-window index of each forward-window index, -1 where the
    forward position is padding or outside the reverse window."""
    lengths = np.asarray(lengths, dtype=np.int64)[:, None]
    forward = np.arange(seq_len)[None, :]
    padding = np.maximum(seq_len - lengths, 0)
    reverse = padding + seq_len - 1 - forward
    return np.where(forward >= padding, reverse, -1)


def onto_forward(reverse_values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per-base values on the reverse window [n, L, 4] -> the forward window [n, L, 4]:
    position r -> p, base c -> its complement 3 - c (channels A, C, G, T reversed); zero
    where a forward base has no partner."""
    rows = np.arange(len(positions))[:, None]
    gathered = reverse_values[rows, np.maximum(positions, 0)][..., ::-1]
    return np.where((positions >= 0)[..., None], gathered, 0.0).astype(reverse_values.dtype)
