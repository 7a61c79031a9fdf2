"""A training file's design, inferred from its rows, and new sequences drawn from it.

DREAM-style libraries are random bases between constant flanks. `infer_design` reads
that design off the encoded training rows (right-aligned uint8 codes, left-padded with N,
as the cache holds them): the 5' flank is the longest prefix (after the padding) and the
3' flank the longest suffix that at least `agreement` of the rows share (1.0: the strict
longest common prefix/suffix; the default 0.9 tolerates the rows longer than seq_len,
whose 5' flank was cut off when they were trimmed to their last seq_len bases, and rows
too short to hold a flank: 0.99 lost the DREAM 5' flank in 1 of 40 random subsets of
300 real rows, while a random column agrees in ~30 % of rows), the lengths are the rows'
encoded lengths (their empirical distribution), and the base composition is that of the
variable parts (N not counted). Read column by column and in row chunks: the memory it
needs beyond the codes is a few bytes per row (the 6.7M DREAM rows included).

Drawing is stateless: batch `step` of stream `stream` is a pure function of
(seed, stream, step) (`batch_rng`), like the shuffled order of dataset.py, so a resumed run
draws exactly the batches an uninterrupted one would. NumPy only (no TensorFlow).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from dream_keras.data import augment
from dream_keras.data.sequences import N_CODE, leading_padding

GENERATORS = ("design", "mutate", "shuffle")
DEFAULT_AGREEMENT = 0.9
_CHUNK_ROWS = 100_000  # rows per chunk of the composition count


def batch_rng(seed: int, stream: int, step: int) -> np.random.Generator:
    """The random generator of one batch: a function of (seed, stream, step) alone."""
    return np.random.default_rng([int(seed) % 2**63, int(stream), int(step)])


def padding_lengths(codes: np.ndarray) -> np.ndarray:
    """int64 [n]: the left padding of each right-aligned row (sequences.leading_padding,
    the window rule's own count)."""
    return leading_padding(codes).astype(np.int64)


def _shared_length(column_of, lengths: np.ndarray, width: int, agreement: float) -> int:
    """Longest k such that >= `agreement` of the rows hold the modal letters in columns
    [0, k) (`column_of(c)`: column c of the rows, read from the flank's end; rows too
    short to reach it count as disagreeing)."""
    needed = int(np.ceil(agreement * len(lengths)))
    agrees = np.ones(len(lengths), dtype=bool)
    for column in range(width):
        letters = column_of(column)
        ok = agrees & (lengths > column) & (letters != N_CODE)
        if not ok.any():
            return column
        modal = np.bincount(letters[ok], minlength=N_CODE + 1).argmax()
        agrees = ok & (letters == modal)
        if agrees.sum() < needed:
            return column
    return width


@dataclasses.dataclass(frozen=True)
class SequenceDesign:
    """Constant flanks around a variable part, as codes; lengths of the encoded rows."""

    prefix: np.ndarray        # uint8 codes of the 5' flank
    suffix: np.ndarray        # uint8 codes of the 3' flank
    lengths: np.ndarray       # int64: encoded length of every training row (<= seq_len)
    composition: np.ndarray   # float64 [4]: A, C, G, T frequencies of the variable parts
    seq_len: int

    def summary(self) -> dict:
        """JSON-ready description (for run.json)."""
        letters = np.frombuffer(b"ACGT", dtype=np.uint8)
        values, counts = np.unique(self.lengths, return_counts=True)
        return {"prefix": letters[self.prefix].tobytes().decode(),
                "suffix": letters[self.suffix].tobytes().decode(),
                "composition": dict(zip("ACGT", np.round(self.composition, 4).tolist())),
                "length_min": int(values[0]), "length_max": int(values[-1]),
                "length_mode": int(values[counts.argmax()]),
                "variable_length_mode": int(values[counts.argmax()]) - len(self.prefix)
                - len(self.suffix)}

    def variable_region(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) columns [n] of each row's variable part: after its padding and the
        5' flank's length, before the 3' flank (empty for rows too short to hold both)."""
        start = padding_lengths(codes) + len(self.prefix)
        end = np.full(len(start), self.seq_len - len(self.suffix), dtype=np.int64)
        return np.minimum(start, end), end

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """uint8 [count, seq_len]: new rows of this design (lengths drawn from the training
        rows', variable bases i.i.d. from their composition), right-aligned like the cache."""
        lengths = rng.choice(self.lengths, size=count)
        bases = rng.choice(4, size=(count, self.seq_len), p=self.composition).astype(np.uint8)
        columns = np.arange(self.seq_len)[None, :]
        first = (self.seq_len - lengths)[:, None]  # first column of each row
        out = np.where(columns < first, np.uint8(N_CODE), bases)
        prefix_end = np.minimum(first + len(self.prefix), self.seq_len - len(self.suffix))
        in_prefix = (columns >= first) & (columns < prefix_end)
        prefix_index = np.clip(columns - first, 0, max(len(self.prefix) - 1, 0))
        if len(self.prefix):
            out = np.where(in_prefix, self.prefix[prefix_index], out)
        if len(self.suffix):  # never over a row's padding (rows shorter than the flank)
            suffix_start = self.seq_len - len(self.suffix)
            in_suffix = (columns >= suffix_start) & (columns >= first)
            out = np.where(in_suffix, self.suffix[np.maximum(columns - suffix_start, 0)], out)
        return out.astype(np.uint8)


def infer_design(codes: np.ndarray, agreement: float = DEFAULT_AGREEMENT) -> SequenceDesign:
    """The design of right-aligned training rows `codes` [n, seq_len] (see module doc).
    Raises ValueError for rows that hold no variable base (every row its flanks)."""
    codes = np.asarray(codes, dtype=np.uint8)
    if codes.ndim != 2 or len(codes) == 0:
        raise ValueError(f"need encoded rows [n, seq_len], got shape {codes.shape}")
    if not 0.5 < agreement <= 1.0:
        raise ValueError(f"agreement must be in (0.5, 1], got {agreement}")
    rows, seq_len = codes.shape
    padding = np.concatenate([padding_lengths(codes[first:first + _CHUNK_ROWS])
                              for first in range(0, rows, _CHUNK_ROWS)])
    lengths = seq_len - padding
    every_row = np.arange(rows)

    def from_5_prime(column):  # column `column` of the rows left-aligned
        return codes[every_row, np.minimum(padding + column, seq_len - 1)]

    def from_3_prime(column):
        return codes[:, seq_len - 1 - column]

    prefix_length = _shared_length(from_5_prime, lengths, seq_len, agreement)
    suffix_length = _shared_length(from_3_prime, lengths, seq_len, agreement)
    shortest = int(np.quantile(lengths, 1.0 - agreement)) if agreement < 1 else int(lengths.min())
    suffix_length = max(0, min(suffix_length, shortest - prefix_length))
    prefix = np.array([_modal(from_5_prime(c)[lengths > c]) for c in range(prefix_length)],
                      dtype=np.uint8)
    suffix = np.array([_modal(from_3_prime(c)[lengths > c])
                       for c in reversed(range(suffix_length))], dtype=np.uint8)
    counts = np.zeros(4)
    columns = np.arange(seq_len)[None, :]
    for first in range(0, rows, _CHUNK_ROWS):
        chunk = codes[first:first + _CHUNK_ROWS]
        start = padding[first:first + _CHUNK_ROWS, None] + prefix_length
        variable = (columns >= start) & (columns < seq_len - suffix_length) & (chunk < N_CODE)
        counts += np.bincount(chunk[variable], minlength=4)[:4]
    if counts.sum() == 0:
        raise ValueError("the rows have no variable bases: every row is its flanks")
    return SequenceDesign(prefix=prefix, suffix=suffix, lengths=lengths,
                          composition=counts / counts.sum(), seq_len=seq_len)


def _modal(letters: np.ndarray) -> int:
    return int(np.bincount(letters, minlength=N_CODE + 1).argmax())


@dataclasses.dataclass(frozen=True)
class SequenceGenerator:
    """Draws batches of new sequences: of the design ("design"), or copies of random
    training rows with their variable part mutated ("mutate", each base with probability
    `mutation_rate`) or shuffled ("shuffle": same bases, new order)."""

    design: SequenceDesign
    kind: str = "design"
    train_codes: np.ndarray | None = None
    mutation_rate: float = 0.1

    def __post_init__(self):
        if self.kind not in GENERATORS:
            raise ValueError(f"unknown generator {self.kind!r}; one of {', '.join(GENERATORS)}")
        if self.kind != "design" and (self.train_codes is None or not len(self.train_codes)):
            raise ValueError(f"the {self.kind!r} generator needs the training rows")

    def batch(self, seed: int, stream: int, step: int, count: int) -> np.ndarray:
        """uint8 [count, seq_len]: batch `step` of stream `stream` (stateless)."""
        rng = batch_rng(seed, stream, step)
        if self.kind == "design":
            return self.design.draw(rng, count)
        rows = self.train_codes[rng.integers(0, len(self.train_codes), size=count)]
        start, end = self.design.variable_region(rows)
        if self.kind == "mutate":
            return augment.mutate(rows, start, end, rng, self.mutation_rate)
        return augment.shuffle(rows, start, end, rng)
