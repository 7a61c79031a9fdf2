"""DNA encoding, the package's one owner of it: letters -> codes -> one-hot, the window
rule for sequences of any length, and the reverse strand.

Codes: A=0, C=1, G=2, T=3, N=4 (lower case accepted). One-hot channels are A, C, G, T and
N is the all-zero vector, exactly as the original model's input. The window rule: a
sequence longer than seq_len keeps its LAST seq_len bases, a shorter one is left-padded
with N (`encode`); its reverse strand is the reverse complement of that window
(`reverse_complement_right_aligned`). TensorFlow mirrors of these, for the compiled
forward and the exported SavedModel, live in dream_keras/sequence_ops.py and are tested
equal to these. Everything here is
vectorised over a whole batch of sequences (no per-letter Python loop) and imports only
NumPy, so data preparation starts fast.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dream_keras.errors import DreamKerasError

ALPHABET = "ACGT"
N_CODE = 4
INVALID_CODE = 255
DEFAULT_SEQ_LEN = 110

# Byte value -> code; every byte that is not a/c/g/t/n (any case) maps to INVALID_CODE.
_CODE_OF_BYTE = np.full(256, INVALID_CODE, dtype=np.uint8)
for _code, _letter in enumerate("ACGTN"):
    _CODE_OF_BYTE[ord(_letter)] = _code
    _CODE_OF_BYTE[ord(_letter.lower())] = _code

# Rows per piece of reverse_complement_right_aligned: 65,536 rows of 110 codes keep its
# temporaries near 30 MB, whatever the input's size.
REVERSE_CHUNK_ROWS = 65_536
_VALID_LETTERS = frozenset("ACGTNacgtn")


class InvalidSequenceError(DreamKerasError, ValueError):
    """A sequence holds a letter outside ACGTN; `row` is its 0-based index in the batch."""

    def __init__(self, row: int, letter: str | None, sequence: str):
        self.row = row
        self.letter = letter  # None: the sequence is a missing-value marker
        super().__init__(
            f"{sequence!r} is {MISSING_MARKER_PROBLEM}" if letter is None else
            f"invalid letter {letter!r} in sequence {_abbreviate(sequence)!r} "
            "(allowed: A, C, G, T, N, any case)"
        )


# The missing-value markers other tools write into empty cells (R's NA, NumPy's and
# pandas' nan) are spelled in ACGTN letters: taken as 2- and 3-base sequences, they were
# predicted, and even trained on, without a word.
MISSING_MARKERS = frozenset({"NA", "NAN"})
MISSING_MARKER_PROBLEM = "a missing-value marker (NA, nan), not a sequence"


def missing_marker_rows(sequences: Sequence[str], lengths: np.ndarray) -> np.ndarray:
    """Indices of the sequences that are a missing-value marker, any case (`lengths`:
    their lengths, so that only the 2- and 3-letter ones are looked at)."""
    short = np.flatnonzero((lengths == 2) | (lengths == 3))
    return np.array([i for i in short if sequences[i].upper() in MISSING_MARKERS],
                    dtype=np.int64)


def _abbreviate(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def find_invalid_rows(sequences: Sequence[str]) -> np.ndarray:
    """Indices of the sequences that contain a letter outside ACGTN (or are empty)."""
    sequences = list(sequences)
    if not sequences:
        return np.zeros(0, dtype=np.int64)
    lengths, codes = _concatenated_codes(sequences)
    return _invalid_rows(sequences, codes, lengths)


def encode_and_find_invalid(sequences: Sequence[str],
                            seq_len: int = DEFAULT_SEQ_LEN) -> tuple[np.ndarray, np.ndarray]:
    """(codes [n, seq_len], indices of invalid rows) in one pass over the letters.

    For readers that report bad rows themselves: the codes of an invalid row are
    meaningless (they hold INVALID_CODE) and must be dropped by the caller.
    """
    sequences = list(sequences)
    if not sequences:
        return np.zeros((0, seq_len), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    lengths, codes = _concatenated_codes(sequences)
    return _right_aligned(codes, lengths, seq_len), _invalid_rows(sequences, codes, lengths)


def _invalid_rows(sequences: list[str], codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    bad_positions = np.flatnonzero(codes == INVALID_CODE)
    bad_rows = np.searchsorted(np.cumsum(lengths), bad_positions, side="right")
    return np.union1d(np.union1d(np.unique(bad_rows), np.flatnonzero(lengths == 0)),
                      missing_marker_rows(sequences, lengths))


def encode(sequences: Sequence[str], seq_len: int = DEFAULT_SEQ_LEN) -> np.ndarray:
    """Encode strings as uint8 codes [n, seq_len]: keep the LAST seq_len bases, left-pad with N.

    The 3' end of a DREAM promoter sits next to the gene, so aligning sequences at their
    end (as the original did) keeps every position's meaning fixed whatever the length.
    Raises InvalidSequenceError for a letter outside ACGTN.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    if isinstance(sequences, str):
        raise TypeError("encode() takes a sequence of strings, not a single string")
    sequences = list(sequences)
    if not sequences:
        return np.zeros((0, seq_len), dtype=np.uint8)
    lengths, codes = _concatenated_codes(sequences)
    invalid = np.flatnonzero(codes == INVALID_CODE)
    if invalid.size:
        row = int(np.searchsorted(np.cumsum(lengths), invalid[0], side="right"))
        raise InvalidSequenceError(row, _first_invalid_letter(sequences[row]), sequences[row])
    markers = missing_marker_rows(sequences, lengths)
    if markers.size:
        raise InvalidSequenceError(int(markers[0]), None, sequences[markers[0]])
    return _right_aligned(codes, lengths, seq_len)


def _first_invalid_letter(sequence: str) -> str:
    """The sequence's first character outside ACGTN, read as a character (the codes count
    UTF-8 bytes: 'é' is two of them, and its first byte alone read 'Ã')."""
    return next(letter for letter in sequence if letter not in _VALID_LETTERS)


def _concatenated_codes(sequences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Lengths [n] (in bytes) and the codes of all sequences joined end to end."""
    joined = "".join(sequences).encode("utf-8", errors="replace")
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    if len(joined) != int(lengths.sum()):
        # Multi-byte characters: count bytes per sequence so offsets stay right.
        lengths = np.fromiter((len(s.encode("utf-8", errors="replace")) for s in sequences),
                              dtype=np.int64, count=len(sequences))
    return lengths, _CODE_OF_BYTE[np.frombuffer(joined, dtype=np.uint8)]


def _right_aligned(codes: np.ndarray, lengths: np.ndarray, seq_len: int) -> np.ndarray:
    """Place each sequence's last seq_len codes at the right of a row of N codes.

    A window of seq_len codes ending at each sequence's end is read from the joined codes
    (prefixed with seq_len N codes so the first window exists); in rows shorter than
    seq_len the window's head belongs to the previous sequence and is reset to N. Copies
    only the output, with no per-row index arrays.
    """
    padded = np.concatenate([np.full(seq_len, N_CODE, dtype=np.uint8), codes])
    windows = np.lib.stride_tricks.sliding_window_view(padded, seq_len)
    out = windows[np.cumsum(lengths)]  # window i covers joined[end_i - seq_len : end_i]
    short = np.flatnonzero(lengths < seq_len)
    if short.size:
        head = np.arange(seq_len)[None, :] < (seq_len - lengths[short])[:, None]
        out[short] = np.where(head, np.uint8(N_CODE), out[short])
    return out


# Row c is the one-hot of code c (A, C, G, T); row 4 (N) is all zeros.
_ONE_HOT_TABLE = np.concatenate([np.eye(4, dtype=np.float32), np.zeros((1, 4), np.float32)])


def one_hot(codes: np.ndarray, dtype=np.float32) -> np.ndarray:
    """One-hot [..., 4] from codes [...]; channels A, C, G, T; N (4) is all zeros.

    A table lookup (`np.take`): ~4x faster than tf.one_hot on a 1024-row batch on CPU, which
    is what lets the training pipeline (dataset.py) outrun 8 GPUs.
    """
    codes = np.asarray(codes)
    if codes.size and codes.max() > N_CODE:
        raise ValueError(f"codes must be in 0..{N_CODE}, found {int(codes.max())}")
    table = _ONE_HOT_TABLE if dtype == np.float32 else _ONE_HOT_TABLE.astype(dtype)
    return np.take(table, codes, axis=0)


def decode(codes: np.ndarray) -> list[str]:
    """Strings from codes [n, seq_len] (padding comes back as N): what a k-mer teacher
    fitted on cached rows reads (teachers.py)."""
    letters = np.frombuffer(b"ACGTN", dtype=np.uint8)[np.asarray(codes)]
    return [row.tobytes().decode("ascii") for row in letters]


def _complement(codes: np.ndarray) -> np.ndarray:
    """uint8 codes complemented (A<->T, C<->G, N stays N) by arithmetic: a lookup table
    indexed by the codes would first copy them as int64 indices, 8 bytes each."""
    return np.where(codes == N_CODE, codes, np.uint8(3) - codes)


def leading_padding(codes: np.ndarray) -> np.ndarray:
    """int [...]: the window rule's padding of each encoded row [..., seq_len], its leading
    N codes (a sequence's own leading Ns cannot be told from padding and count as it)."""
    return np.cumprod(np.asarray(codes) == N_CODE, axis=-1, dtype=np.int8).sum(axis=-1)


def reverse_complement_right_aligned(codes: np.ndarray, *,
                                     chunk_rows: int = REVERSE_CHUNK_ROWS) -> np.ndarray:
    """The other strand of encoded rows [n, seq_len], encoded by the same window rule.

    THE reverse-strand rule of the package (training augmentation, strand-averaged
    prediction, variant effects and the exported SavedModel all call this or its tested
    TensorFlow mirror, `dream_keras.sequence_ops.reverse_complement_right_aligned`): the
    window comes first, then the complement. `encode` keeps a sequence's last seq_len
    bases; the reverse strand is the reverse complement of exactly those bases, aligned
    right again (its left N padding moved back to the left). Both strands therefore show
    the model the same bases, and a 135-bp sequence's reverse strand is the complement of
    its last 110 bases (not its first 110). Leading Ns cannot be told from padding in
    codes and count as padding. See docs/data.md, "Encoding".

    `chunk_rows` rows at a time: the temporaries (a few bytes per code) stay a few tens of
    MB beside the output however many rows come (the whole data set's reverse strand once
    took 17 bytes per code).
    """
    codes = np.asarray(codes, dtype=np.uint8)
    flat = codes.reshape(-1, codes.shape[-1])
    reverse = np.empty_like(flat)
    for start in range(0, len(flat), chunk_rows):
        reverse[start:start + chunk_rows] = _reverse_rows(flat[start:start + chunk_rows])
    return reverse.reshape(codes.shape)


def _reverse_rows(codes: np.ndarray) -> np.ndarray:
    """reverse_complement_right_aligned of codes uint8 [m, seq_len], all at once: each row
    reversed and complemented, then moved right by its padding (whose Ns, now at its end,
    go back to the front), the rows of one padding in one slice copy (no index per code)."""
    seq_len = codes.shape[1]
    flipped = _complement(codes)[:, ::-1]
    padding = leading_padding(codes)
    reverse = np.full_like(codes, N_CODE)
    for pad in np.unique(padding):
        rows = np.flatnonzero(padding == pad)
        reverse[rows, pad:] = flipped[rows, :seq_len - pad]
    return reverse


def hidden_differences(ref_sequences: Sequence[str], alt_sequences: Sequence[str],
                       ref_codes: np.ndarray, alt_codes: np.ndarray) -> np.ndarray:
    """bool [n]: pairs whose sequences differ (ignoring case) while their encoded windows
    (`ref_codes`, `alt_codes` [n, seq_len]: the last seq_len bases) are identical. The
    model never sees such a difference, so its predicted effect is 0 by construction."""
    same_window = (np.asarray(ref_codes) == np.asarray(alt_codes)).all(axis=1)
    return np.array([same and ref.upper() != alt.upper() for same, ref, alt
                     in zip(same_window, ref_sequences, alt_sequences)], dtype=bool)


def encode_strands(sequences: Sequence[str], seq_len: int = DEFAULT_SEQ_LEN,
                   both_strands: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(forward codes, reverse-strand codes or None): uint8 [n, seq_len] each.

    The forward strand is `encode`; the reverse strand is `reverse_complement_right_aligned`
    of it, so prediction sees the window training augmentation sees. Raises
    InvalidSequenceError (with `.row`) for a letter outside ACGTN.
    """
    forward = encode(sequences, seq_len)
    return forward, (reverse_complement_right_aligned(forward) if both_strands else None)
