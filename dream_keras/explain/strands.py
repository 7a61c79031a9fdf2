"""Where each base of the model's window sits on the reverse strand the model also sees.

The model sees the LAST seq_len bases of a string (left-padded with N); the reverse strand
(`--reverse_complement_average`) is the package's one rule,
data/sequences.reverse_complement_right_aligned: the reverse complement of exactly that
window, its N padding kept on the left. The padding is read from the codes by the same
rule (data/sequences.leading_padding: the window's leading N codes, a sequence's own
leading Ns included), so with pad leading Ns the base at forward window index p (p >= pad)
sits at reverse window index r = pad + L - 1 - p; every forward base has its partner.
"""
from __future__ import annotations

import numpy as np

from dream_keras.data.sequences import leading_padding


def reverse_positions(codes) -> np.ndarray:
    """int64 [n, seq_len]: reverse-window index of each forward-window index of the encoded
    windows codes [n, seq_len], -1 where the forward position is padding."""
    codes = np.asarray(codes)
    seq_len = codes.shape[-1]
    forward = np.arange(seq_len)[None, :]
    padding = leading_padding(codes).astype(np.int64)[:, None]
    reverse = padding + seq_len - 1 - forward
    return np.where(forward >= padding, reverse, -1)


def onto_forward(reverse_values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per-base values on the reverse window [n, L, 4] -> the forward window [n, L, 4]:
    position r -> p, base c -> its complement 3 - c (channels A, C, G, T reversed); zero
    where a forward base has no partner."""
    rows = np.arange(len(positions))[:, None]
    gathered = reverse_values[rows, np.maximum(positions, 0)][..., ::-1]
    return np.where((positions >= 0)[..., None], gathered, 0.0).astype(reverse_values.dtype)
