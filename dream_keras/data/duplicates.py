"""Sequences that occur more than once in a training file: with different values, and
on both sides of the train/validation split.

Such rows are kept (a sequence measured twice is real data, and the original trained on
every row), but differing values cap what any model can reach on them, and a validation
row whose copy trains makes val_pearson (which picks the best epoch) optimistic, so
training says how many there are. Sequences are compared as the model sees them: encoded
to seq_len.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Odd 64-bit multipliers of a multiply-xor hash (wrapping uint64 arithmetic).
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0xD6E8FEB86659FD93)


@dataclasses.dataclass(frozen=True)
class ConflictingDuplicates:
    sequences: int  # distinct sequences seen with two or more different values
    rows: int       # rows holding those sequences

    def __bool__(self) -> bool:
        return self.sequences > 0


def conflicting_duplicates(codes: np.ndarray, values: np.ndarray) -> ConflictingDuplicates:
    """Count sequences (rows of `codes`, uint8 [N, L]) that repeat with differing `values`.

    Rows are grouped by a 64-bit hash (linear time and memory: no [N, L] sort) and every
    candidate group is then compared byte for byte, so a hash collision never counts."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    values = np.asarray(values)
    if len(codes) < 2:
        return ConflictingDuplicates(0, 0)
    hashes = _row_hashes(codes)
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    repeated = np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1])
    if not len(repeated):
        return ConflictingDuplicates(0, 0)
    candidates = order[np.union1d(repeated, repeated + 1)]  # rows sharing a hash
    # Exact grouping of the (few) candidate rows by their bytes, then each group's value
    # range: a group whose smallest and largest values differ is a conflict.
    _, group = np.unique(codes[candidates], axis=0, return_inverse=True)
    by_group = np.argsort(group.reshape(-1), kind="stable")
    group = group.reshape(-1)[by_group]
    grouped_values = values[candidates][by_group]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, len(group)])
    conflicting = (sizes > 1) & (np.maximum.reduceat(grouped_values, starts)
                                 != np.minimum.reduceat(grouped_values, starts))
    return ConflictingDuplicates(int(conflicting.sum()), int(sizes[conflicting].sum()))


def rows_also_in(codes: np.ndarray, reference: np.ndarray) -> int:
    """How many rows of `codes` (uint8 [N, L]) also occur, byte for byte, among the rows of
    `reference` ([M, L]). Hash candidates first (linear time), then an exact comparison,
    so a hash collision never counts."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    reference = np.ascontiguousarray(reference, dtype=np.uint8)
    if not len(codes) or not len(reference):
        return 0
    hashes, reference_hashes = _row_hashes(codes), _row_hashes(reference)
    candidates = np.flatnonzero(np.isin(hashes, reference_hashes))
    if not len(candidates):
        return 0
    in_reference = np.isin(reference_hashes, hashes[candidates])
    known = {row.tobytes() for row in reference[in_reference]}
    return sum(codes[row].tobytes() in known for row in candidates)


def _row_hashes(codes: np.ndarray, chunk_rows: int = 1 << 18) -> np.ndarray:
    """A 64-bit hash per row, in chunks (bounded extra memory on millions of rows)."""
    width = -(-codes.shape[1] // 8) * 8
    hashes = np.empty(len(codes), dtype=np.uint64)
    for start in range(0, len(codes), chunk_rows):
        chunk = codes[start:start + chunk_rows]
        padded = np.zeros((len(chunk), width), dtype=np.uint8)
        padded[:, :codes.shape[1]] = chunk
        words = padded.view(np.uint64)  # [rows, width / 8]
        mixed = np.full(len(chunk), _SEED, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for column in range(words.shape[1]):
                mixed = (mixed ^ words[:, column]) * _MIX
                mixed ^= mixed >> np.uint64(29)
        hashes[start:start + len(chunk)] = mixed
    return hashes
