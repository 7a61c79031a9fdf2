"""Evolution-inspired augmentations of encoded rows (NumPy, vectorised, no TensorFlow).

The four of EvoAug (Lee et al., Genome Biology 2023) - random mutation, insertion, deletion
and translocation - rewritten for this package's cached codes: each acts only on a row's
variable part, columns [start, end) (the constant flanks and the padding never change),
and keeps every row's length, so the pipeline's fixed [batch, seq_len] shape and right
alignment hold. A row stays in its place in the batch, so its label stays with it.

Semantics (per row, magnitudes drawn independently per row):
  mutation      each variable base becomes one of the other three with probability `rate`
                (EvoAug mutates a fixed fraction of positions to a random base);
  insertion     a random stretch of 1..`max_length` bases is inserted at a random point of
                the variable part, which is then cut back to its length by dropping the
                excess from its ends (a random split between the two ends); EvoAug pads
                the batch to a longer length instead;
  deletion      a random stretch of 1..`max_length` bases is removed and the variable part
                refilled to its length with random bases, split at random between its two
                ends (as EvoAug's padding with random DNA);
  translocation the variable part is rotated by a random shift in [-max_shift, max_shift]
                (EvoAug's roll), its bases wrapping around within the variable part.
Random bases are uniform over A, C, G, T, as EvoAug's.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from dream_keras.data.sequences import N_CODE

KINDS = ("mutation", "insertion", "deletion", "translocation")


def _region_positions(codes, start, end):
    """(position within the variable part [n, L], its length [n, 1], in-region mask)."""
    columns = np.arange(codes.shape[1])[None, :]
    position = columns - np.asarray(start)[:, None]
    length = (np.asarray(end) - np.asarray(start))[:, None]
    return position, length, (position >= 0) & (position < length)


def _remap(codes, start, inside, source, use_random, rng, rows):
    """Rows `rows` of codes with each variable column (`inside`) replaced by the row's own
    variable column `source` (a position within the variable part) or, where `use_random`,
    by a random base; other rows and every column outside the variable part unchanged."""
    out = codes
    columns = np.clip(np.asarray(start)[:, None] + source, 0, codes.shape[1] - 1)
    moved = np.take_along_axis(codes, columns, axis=1)
    random = rng.integers(0, 4, size=codes.shape, dtype=np.uint8)
    replaced = np.where(use_random, random, moved)
    change = rows[:, None] & np.asarray(inside)
    return np.where(change, replaced, out).astype(np.uint8)


def _rows(rng, count, probability):
    return rng.random(count) < probability


def mutate(codes, start, end, rng, rate: float, probability: float = 1.0) -> np.ndarray:
    """Point mutations in the variable part (see module doc)."""
    codes = np.asarray(codes, dtype=np.uint8)
    _, _, inside = _region_positions(codes, start, end)
    rows = _rows(rng, len(codes), probability)
    hit = inside & rows[:, None] & (rng.random(codes.shape) < rate)
    shift = rng.integers(1, 4, size=codes.shape, dtype=np.uint8)
    mutated = np.where(codes < 4, (codes + shift) % 4, rng.integers(0, 4, size=codes.shape))
    return np.where(hit, mutated, codes).astype(np.uint8)


def shuffle(codes, start, end, rng) -> np.ndarray:
    """Each row's variable bases in a new random order (same composition)."""
    codes = np.asarray(codes, dtype=np.uint8)
    position, length, inside = _region_positions(codes, start, end)
    # Sort keys: random inside the variable part; outside it, the column index pushed
    # below (before) or above (after) every random key, so those columns keep their order.
    keys = np.where(inside, rng.random(codes.shape),
                    np.where(position < 0, -2.0 + position / codes.shape[1],
                             2.0 + position / codes.shape[1]))
    return np.take_along_axis(codes, np.argsort(keys, axis=1, kind="stable"), axis=1)


def _edit_sizes(codes, start, end, rng, max_length: int):
    """(position, length, inside, size) of an insertion or deletion: each row's positions
    in its variable part, that part's length, the mask of it, and 1..max_length bases to
    edit (at most the part's length)."""
    position, length, inside = _region_positions(codes, start, end)
    size = np.minimum(rng.integers(1, max_length + 1, size=len(codes))[:, None], length)
    return position, length, inside, size


def insert(codes, start, end, rng, max_length: int, probability: float = 1.0) -> np.ndarray:
    """Random insertion of 1..max_length bases, the variable part cut back to length."""
    codes = np.asarray(codes, dtype=np.uint8)
    if max_length <= 0:
        return codes.copy()
    n = len(codes)
    position, length, inside, size = _edit_sizes(codes, start, end, rng, max_length)
    point = np.floor(rng.random((n, 1)) * (length + 1)).astype(np.int64)
    offset = np.floor(rng.random((n, 1)) * (size + 1)).astype(np.int64)
    t = position + offset  # position in the lengthened variable part
    source = np.where(t < point, t, t - size)
    use_random = (t >= point) & (t < point + size)
    return _remap(codes, start, inside, source, use_random, rng,
                  _rows(rng, n, probability) & (length[:, 0] > 0))


def delete(codes, start, end, rng, max_length: int, probability: float = 1.0) -> np.ndarray:
    """Random deletion of 1..max_length bases, refilled with random bases at the ends."""
    codes = np.asarray(codes, dtype=np.uint8)
    if max_length <= 0:
        return codes.copy()
    n = len(codes)
    position, length, inside, size = _edit_sizes(codes, start, end, rng, max_length)
    point = np.floor(rng.random((n, 1)) * (length - size + 1)).astype(np.int64)
    left = np.floor(rng.random((n, 1)) * (size + 1)).astype(np.int64)
    t = position - left  # position in the shortened variable part
    source = np.where(t < point, t, t + size)
    use_random = (t < 0) | (t >= length - size)
    return _remap(codes, start, inside, source, use_random, rng,
                  _rows(rng, n, probability) & (length[:, 0] > 0)).astype(np.uint8)


def translocate(codes, start, end, rng, max_shift: int, probability: float = 1.0) -> np.ndarray:
    """Rotate each variable part by a random shift in [-max_shift, max_shift]."""
    codes = np.asarray(codes, dtype=np.uint8)
    n = len(codes)
    position, length, inside = _region_positions(codes, start, end)
    shift = rng.integers(-max_shift, max_shift + 1, size=(n, 1))
    source = (position - shift) % np.maximum(length, 1)
    return _remap(codes, start, inside, source, np.zeros(codes.shape, dtype=bool), rng,
                  _rows(rng, n, probability) & (length[:, 0] > 0)).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Augmentations:
    """Which augmentations a run applies and how strongly; 0 switches one off. Each is
    applied to each row independently with `probability`, in the order of KINDS."""

    mutation_rate: float = 0.0
    insertion_max: int = 0
    deletion_max: int = 0
    translocation_max: int = 0
    probability: float = 0.5

    @property
    def enabled(self) -> bool:
        """Whether any row can change: a magnitude set, at a probability above 0."""
        return self.probability > 0 and bool(self.mutation_rate or self.insertion_max
                                             or self.deletion_max or self.translocation_max)

    def apply(self, codes, start, end, rng) -> np.ndarray:
        """Augmented copy of codes [n, seq_len] (row i stays row i)."""
        out = np.asarray(codes, dtype=np.uint8)
        p = self.probability
        if self.mutation_rate:
            out = mutate(out, start, end, rng, self.mutation_rate, p)
        if self.insertion_max:
            out = insert(out, start, end, rng, self.insertion_max, p)
        if self.deletion_max:
            out = delete(out, start, end, rng, self.deletion_max, p)
        if self.translocation_max:
            out = translocate(out, start, end, rng, self.translocation_max, p)
        return _first_base_kept(np.asarray(codes), out, rng)


def _first_base_kept(codes, out, rng) -> np.ndarray:
    """`out` with no row's first base turned into N: the window rule counts leading N as
    padding, so an N inside a design without a 5' flank, moved onto the first base by a
    shift, would lengthen the padding (and move the reverse strand); it becomes a random
    base instead. With a 5' flank the first base is the flank's, which never changes."""
    rows = np.arange(len(codes))
    first = np.argmax(codes != N_CODE, axis=1)  # each row's first base (0 for all-N rows)
    moved = (out[rows, first] == N_CODE) & (codes[rows, first] != N_CODE)
    if moved.any():
        out = out.copy()
        out[rows[moved], first[moved]] = rng.integers(0, 4, int(moved.sum()), dtype=np.uint8)
    return out
