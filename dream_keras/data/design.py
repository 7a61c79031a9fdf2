"""A training file's design, inferred from its rows, and new sequences drawn from it.

DREAM-style libraries are random bases between constant flanks. `infer_design` reads
that design off the encoded training rows (right-aligned uint8 codes, left-padded with N,
as the cache holds them): the 5' flank is the longest prefix (after the padding) and the
3' flank the longest suffix that at least `agreement` of the rows share (1.0: the strict
longest common prefix/suffix; the default 0.99 tolerates the few rows longer than seq_len,
whose 5' flank was cut off when they were trimmed to their last seq_len bases), the
lengths are the rows' encoded lengths (their empirical distribution), and the base
composition is that of the variable parts (N not counted).

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
DEFAULT_AGREEMENT = 0.99


def batch_rng(seed: int, stream: int, step: int) -> np.random.Generator:
    """The random generator of one batch: a function of (seed, stream, step) alone."""
    return np.random.default_rng([int(seed) % 2**63, int(stream), int(step)])


def padding_lengths(codes: np.ndarray) -> np.ndarray:
    """int64 [n]: the left padding of each right-aligned row (sequences.leading_padding,
    the window rule's own count)."""
    return leading_padding(codes).astype(np.int64)


def _shared_length(aligned: np.ndarray, valid: np.ndarray, agreement: float) -> int:
    """Longest k such that >= `agreement` of the rows hold the modal letters in columns
    [0, k) of `aligned` (rows too short count as disagreeing)."""
    rows, width = aligned.shape
    needed = int(np.ceil(agreement * rows))
    agrees = np.ones(rows, dtype=bool)
    for column in range(width):
        letters = aligned[:, column]
        ok = agrees & valid[:, column] & (letters != N_CODE)
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
    """The design of right-aligned training rows `codes` [n, seq_len] (see module doc)."""
    codes = np.asarray(codes, dtype=np.uint8)
    if codes.ndim != 2 or len(codes) == 0:
        raise ValueError(f"need encoded rows [n, seq_len], got shape {codes.shape}")
    if not 0.5 < agreement <= 1.0:
        raise ValueError(f"agreement must be in (0.5, 1], got {agreement}")
    rows, seq_len = codes.shape
    padding = padding_lengths(codes)
    lengths = seq_len - padding
    # Left-align each row (roll left by its padding) to read the 5' flank.
    columns = np.arange(seq_len)[None, :]
    left = np.take_along_axis(codes, (columns + padding[:, None]) % seq_len, axis=1)
    valid_left = columns < lengths[:, None]
    prefix_length = _shared_length(left, valid_left, agreement)
    right = codes[:, ::-1]
    suffix_length = _shared_length(right, columns < lengths[:, None], agreement)
    shortest = int(np.quantile(lengths, 1.0 - agreement)) if agreement < 1 else int(lengths.min())
    suffix_length = max(0, min(suffix_length, shortest - prefix_length))
    prefix = _modal_row(left[:, :prefix_length])
    suffix = _modal_row(codes[:, seq_len - suffix_length:])
    start = padding + prefix_length
    variable = (columns >= start[:, None]) & (columns < seq_len - suffix_length)
    counts = np.bincount(codes[variable & (codes < N_CODE)], minlength=4)[:4].astype(float)
    if counts.sum() == 0:
        raise ValueError("the rows have no variable bases: every row is its flanks")
    return SequenceDesign(prefix=prefix, suffix=suffix, lengths=lengths,
                          composition=counts / counts.sum(), seq_len=seq_len)


def _modal_row(block: np.ndarray) -> np.ndarray:
    if block.shape[1] == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.array([np.bincount(column, minlength=N_CODE + 1).argmax() for column in block.T],
                    dtype=np.uint8)


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
