"""The embedded default data set: DREAM-format promoters whose expression is a known function.

    dream-synthetic --output=data/synthetic_train.txt --rows=100000 --seed=0

Rows look like the challenge's `train_sequences.txt` (`sequence<TAB>expression`, no header):
the real constant flanks `TGCATTTTTTTCACATC` + random bases + `GGTTACGGCTGTT`; 80 random
bases in 82 % of rows (total 110 bp), 57..105 in the rest (total 87..135 bp, mostly 107..109);
one N in 0.4 % of rows; half the values whole numbers; every value on the 0..17 scale.

The expression is `expression_of(sequence)` plus noise, where `expression_of` is exactly:

1. Scan the whole sequence (flanks included) on both strands for the motifs below (IUPAC
   W = A/T, R = A/G, Y = C/T, N = any base; an N in the sequence matches nothing). A
   reverse-strand hit is the reverse complement of the consensus read on the given strand;
   the palindromic MCM1 site is counted once. d = number of bases between a hit's last
   base on the forward strand (whichever strand the hit is on) and the sequence's 3' end
   (the random part spans d = 13..92 in a 110-bp row).

   | motif  | consensus     | weight | forward | reverse | position weight p(d) |
   |--------|---------------|--------|---------|---------|----------------------|
   | REB1   | TTACCCG       | +1.5   | 1.0     | 0.5     | proximal             |
   | ABF1   | TCACNNNNNNACG | +1.0   | 1.0     | 1.0     | uniform              |
   | RAP1   | ACCCAYACA     | +1.0   | 1.0     | 1.0     | distal               |
   | GCN4   | TGACTCA       | +1.5   | 1.0     | 1.0     | switch               |
   | MCM1   | CCWWWWWWGG    | +0.6   | 1.0     | palin.  | uniform              |
   | TATA   | TATAWAWR      | +2.0   | 1.0     | 0.0     | window               |
   | UME6   | TCGGCGGC      | -2.0   | 1.0     | 1.0     | proximal             |
   | POLY_T | TTTTTTT       | +0.6   | 1.0     | 0.4     | uniform              |

   With q(d) = min(1, exp(-(d - 13) / 25)) (1 next to the 3' flank, 0.04 at the 5' end):
   uniform p = 1; proximal p = q (acts near the TSS side only); distal p = 1 - q (an
   upstream activating sequence); switch p = 1 - 2q (activates far upstream, represses
   near the 3' end, where it would block initiation); window p = 1 if 25 <= d <= 65 else 0.
   POLY_T hits overlap: a run of r >= 7 T counts r - 6 hits (a run of A on the reverse
   strand counts 0.4 each). The 5' flank's own T7 run gives every row one POLY_T hit.
2. Per motif, activity a = sum over hits of strand gain * p(d); occupancy s = tanh(a)
   saturates (one full hit 0.76, two 0.96; negative for a proximal GCN4 site).
3. Drive z = -0.3 + sum over motifs of weight * s + 1.5 * max(s_GCN4, 0) * s_TATA
   (an upstream GCN4 site and a positioned TATA box act in synergy).
4. expression_of = 17 * sigmoid(z).

The measured value is clip(expression_of + noise, 0, 17), noise ~ Normal(0, 1.25) clipped
(not truncated) to +-3 sd: draws beyond it become exactly +-3.75 (~0.3 % of rows). In a
random half of the rows ('singletons', seen in one sort bin) the value is then rounded to
the nearest integer, in the others to 12 decimals. On held-out rows a perfect model of
`expression_of` reaches Pearson r ~0.90, a 4-mer ridge regression ~0.48 and a ridge on
4-mer counts per positional window ~0.60: a good model learns the motifs, their strand,
position and saturation, the bipartite ABF1 site and the synergy.

Each motif is planted twice independently with probability 0.15 per row (so ~28 % of rows
get at least one copy, on a random strand at a uniform position in the random part) to
make it frequent enough to learn. Later plants may overwrite earlier ones, so fewer rows
keep an intact site: measured on 20,000 rows (seed 0), the random part holds the site on
either strand (chance matches included) in 21-26 % of rows for the 7-10-base motifs and
in 10 % for the 13-base ABF1 site. Rows are drawn in blocks of BLOCK_ROWS, each from its own
generator seeded by (seed, block index): a seed gives the same rows and a byte-identical
file whatever the chunk size, and the first n rows of a bigger set are the n-row set.
Seeds are 0..MAX_SEED (2**32 - 1): NumPy splits a larger seed into 32-bit words, so seed
2**32 with block 0 would be seed 0 with block 1 (the same rows).
Imports only NumPy, so the command line starts in well under a second.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

import numpy as np

from dream_keras import atomic_files
from dream_keras.errors import ConfigurationError, OutputExistsError

from dream_keras.data.sequences import N_CODE, encode

FLANK_5PRIME = "TGCATTTTTTTCACATC"
FLANK_3PRIME = "GGTTACGGCTGTT"
EXPRESSION_MAX = 17.0
NOISE_SD = 1.25
NOISE_CLIP_SDS = 3.0
SINGLETON_FRACTION = 0.5
N_ROW_FRACTION = 0.004
PLANT_PROBABILITY = 0.15
MAX_SEED = 2**32 - 1  # one 32-bit word: see the module docstring
PLANT_ROUNDS = 2
DRIVE_BIAS = -0.3
GCN4_TATA_SYNERGY = 1.5
PROXIMAL_DECAY_BASES = 25.0
TATA_WINDOW = (25, 65)
BLOCK_ROWS = 1024
DEFAULT_CHUNK_ROWS = 65536
VALUE_DECIMALS = 12
PROGRESS_MIN_ROWS = 200_000

# Random-part length -> probability, shaped like the real training file (82 % at 80 bp,
# a tail of shorter synthesis products down to 57 bp, a few longer ones up to 105 bp).
_SHORT_TAIL = np.arange(57, 77)
_LONG_TAIL = np.arange(82, 106)
RANDOM_LENGTHS = np.concatenate([_SHORT_TAIL, [77, 78, 79, 80, 81], _LONG_TAIL])
_SHORT_TAIL_SHAPE = np.geomspace(0.05, 1.0, _SHORT_TAIL.size)  # rarer the shorter
RANDOM_LENGTH_PROBS = np.concatenate([
    0.015 * _SHORT_TAIL_SHAPE / _SHORT_TAIL_SHAPE.sum(),
    [0.008, 0.024, 0.125, 0.82, 0.005],
    np.full(_LONG_TAIL.size, 0.003 / _LONG_TAIL.size),
])
MAX_RANDOM_LENGTH = int(RANDOM_LENGTHS.max())
MAX_SEQ_LEN = len(FLANK_5PRIME) + MAX_RANDOM_LENGTH + len(FLANK_3PRIME)

_IUPAC_CODES = {"A": (0,), "C": (1,), "G": (2,), "T": (3,), "W": (0, 3), "R": (0, 2),
                "Y": (1, 3), "N": (0, 1, 2, 3)}
_IUPAC_COMPLEMENT = str.maketrans("ACGTWRYN", "TGCAWYRA")
_LETTER_BYTES = np.frombuffer(b"ACGTN", dtype=np.uint8)


@dataclasses.dataclass(frozen=True)
class Motif:
    """A planted binding site: its consensus, effect on the drive, and where it counts."""
    name: str
    consensus: str
    weight: float
    forward_gain: float
    reverse_gain: float
    position_effect: str  # 'uniform', 'proximal', 'distal', 'switch' or 'tata_window'
    planted: str = ""     # what is planted, when not the consensus itself

    @property
    def reverse_consensus(self) -> str:
        return self.consensus.translate(_IUPAC_COMPLEMENT)[::-1]

    @property
    def is_palindrome(self) -> bool:
        return self.reverse_consensus == self.consensus


MOTIFS = (
    Motif("REB1", "TTACCCG", 1.5, 1.0, 0.5, "proximal"),
    Motif("ABF1", "TCACNNNNNNACG", 1.0, 1.0, 1.0, "uniform"),
    Motif("RAP1", "ACCCAYACA", 1.0, 1.0, 1.0, "distal"),
    Motif("GCN4", "TGACTCA", 1.5, 1.0, 1.0, "switch"),
    Motif("MCM1", "CCWWWWWWGG", 0.6, 1.0, 0.0, "uniform"),
    Motif("TATA", "TATAWAWR", 2.0, 1.0, 0.0, "tata_window"),
    Motif("UME6", "TCGGCGGC", -2.0, 1.0, 1.0, "proximal"),
    Motif("POLY_T", "TTTTTTT", 0.6, 1.0, 0.4, "uniform", planted="TTTTTTTT"),
)


# ----------------------------------------------------------------------------- the function
def position_weights(position_effect: str, distances: np.ndarray) -> np.ndarray:
    """Weight p(d) of a hit whose last base on the forward strand lies d bases before the
    sequence's 3' end; [len(d)]."""
    distances = np.asarray(distances, dtype=np.float64)
    if position_effect == "uniform":
        return np.ones_like(distances)
    proximal = np.minimum(1.0, np.exp(-(distances - len(FLANK_3PRIME)) / PROXIMAL_DECAY_BASES))
    if position_effect == "proximal":
        return proximal
    if position_effect == "distal":
        return 1.0 - proximal
    if position_effect == "switch":
        return 1.0 - 2.0 * proximal
    if position_effect == "tata_window":
        low, high = TATA_WINDOW
        return ((distances >= low) & (distances <= high)).astype(np.float64)
    raise ValueError(f"unknown position effect {position_effect!r}")


def _letter_table(letter: str) -> np.ndarray:
    """Bool [5]: which codes (A, C, G, T, N) the IUPAC letter accepts; N accepts no N."""
    table = np.zeros(N_CODE + 1, dtype=bool)
    table[list(_IUPAC_CODES[letter])] = True
    return table


def triplet_codes(codes: np.ndarray) -> np.ndarray:
    """Codes of the 3-mers starting at every column, 25 * c0 + 5 * c1 + c2; [n, W - 2] uint8.

    Computed once per batch and shared by every motif scan."""
    codes = np.asarray(codes, dtype=np.uint8)
    return codes[:, :-2] * np.uint8(25) + codes[:, 1:-1] * np.uint8(5) + codes[:, 2:]


def _triplet_table(prefix: str) -> np.ndarray:
    """Bool [125]: which 3-mer codes the first three IUPAC letters accept."""
    accepted = [np.array(_IUPAC_CODES[letter]) for letter in prefix]
    table = np.zeros(125, dtype=bool)
    table[(accepted[0][:, None, None] * 25 + accepted[1][None, :, None] * 5
           + accepted[2][None, None, :]).reshape(-1)] = True
    return table


def pattern_starts(codes: np.ndarray, pattern: str, triplets: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) where the IUPAC pattern (>= 3 letters) starts in codes [n, W], row-major.

    The first three letters are tested at once on the shared 3-mer codes (`triplets`, from
    triplet_codes); the ~1/64 candidates left are checked letter by letter.
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    num_rows, width = codes.shape
    num_starts = width - len(pattern) + 1
    if num_starts < 1 or num_rows == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if triplets is None:
        triplets = triplet_codes(codes)
    rows, columns = np.nonzero(_triplet_table(pattern[:3])[triplets[:, :num_starts]])
    flat_codes = codes.reshape(-1)
    for offset, letter in enumerate(pattern[3:], start=3):
        keep = _letter_table(letter)[flat_codes[rows * width + columns + offset]]
        rows, columns = rows[keep], columns[keep]
    return rows, columns


def motif_activity(codes: np.ndarray, motif: Motif, triplets: np.ndarray | None = None
                   ) -> np.ndarray:
    """Activity a [n] of one motif in right-aligned codes [n, W]: gain * p(d) summed over hits.

    `triplets` (triplet_codes(codes)) may be passed to share it between motifs."""
    num_starts = codes.shape[1] - len(motif.consensus) + 1
    if num_starts < 1:
        return np.zeros(codes.shape[0])
    distances = codes.shape[1] - (np.arange(num_starts) + len(motif.consensus))
    weights = position_weights(motif.position_effect, distances)
    if triplets is None:
        triplets = triplet_codes(codes)
    activity = _weighted_hit_sum(pattern_starts(codes, motif.consensus, triplets),
                                 motif.forward_gain * weights, len(codes))
    if not motif.is_palindrome and motif.reverse_gain:
        activity += _weighted_hit_sum(pattern_starts(codes, motif.reverse_consensus, triplets),
                                      motif.reverse_gain * weights, len(codes))
    return activity


def _weighted_hit_sum(hits: tuple[np.ndarray, np.ndarray], weights: np.ndarray,
                      num_rows: int) -> np.ndarray:
    """Sum of weights[column] over each row's hits; [num_rows] from (rows, columns), weights [P].

    Summing each row's few hits in column order (rather than a BLAS product) gives
    bit-identical values whatever the batch, so files do not depend on chunk size.
    """
    rows, columns = hits
    # float64 also when no row has a hit (bincount then returns integer zeros).
    return np.bincount(rows, weights=weights[columns], minlength=num_rows).astype(np.float64)


def motif_occupancy(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Saturating occupancy s = tanh(a) in (-1, 1) of every motif; name -> [n]."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    triplets = triplet_codes(codes)
    return {motif.name: np.tanh(motif_activity(codes, motif, triplets)) for motif in MOTIFS}


def expression_of_codes(codes: np.ndarray) -> np.ndarray:
    """Noiseless expression [n] (0..17) of right-aligned, N-padded codes [n, W]."""
    occupancy = motif_occupancy(np.asarray(codes, dtype=np.uint8))
    drive = np.full(len(codes), DRIVE_BIAS)
    for motif in MOTIFS:
        drive += motif.weight * occupancy[motif.name]
    drive += GCN4_TATA_SYNERGY * np.maximum(occupancy["GCN4"], 0.0) * occupancy["TATA"]
    return EXPRESSION_MAX / (1.0 + np.exp(-drive))


def expression_of(sequences) -> np.ndarray:
    """The noiseless expression [n] (float64, 0..17) of DNA strings: see the module docstring."""
    sequences = list(sequences)
    if not sequences:
        return np.zeros(0)
    width = max(len(FLANK_3PRIME) + 1, max(map(len, sequences)))
    return expression_of_codes(encode(sequences, seq_len=width))


# ----------------------------------------------------------------------------- the sampler
@dataclasses.dataclass
class _Block:
    """Random draws for BLOCK_ROWS rows: codes [B, MAX_SEQ_LEN] right-aligned, lengths [B],
    noise [B] and the singleton mask [B]."""
    codes: np.ndarray
    lengths: np.ndarray
    noise: np.ndarray
    singleton: np.ndarray


def _block_generator(seed: int, block_index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, block_index]))


def _plant(random_part: np.ndarray, random_lengths: np.ndarray, motif: Motif,
           rng: np.random.Generator) -> None:
    """Write one copy of `motif` into a random subset of rows of random_part [B, R] in place.

    Each row's random part is its LAST random_lengths[i] columns; the copy lands at a
    uniform position inside it, on a random strand, with IUPAC letters drawn uniformly.
    """
    num_rows = len(random_part)
    chosen = rng.random(num_rows) < PLANT_PROBABILITY
    on_reverse = rng.random(num_rows) < 0.5
    uniform_start = rng.random(num_rows)
    text = motif.planted or motif.consensus
    letters = np.stack([np.array(_IUPAC_CODES[letter], dtype=np.uint8)[
        rng.integers(0, len(_IUPAC_CODES[letter]), num_rows)] for letter in text], axis=1)
    letters = np.where(on_reverse[:, None], 3 - letters[:, ::-1], letters)
    rows = np.flatnonzero(chosen)
    first_column = random_part.shape[1] - random_lengths[rows]
    free_starts = random_lengths[rows] - len(text) + 1
    starts = first_column + (uniform_start[rows] * free_starts).astype(int)
    random_part[rows[:, None], starts[:, None] + np.arange(len(text))] = letters[rows]


def _add_rare_n(random_part: np.ndarray, random_lengths: np.ndarray,
                rng: np.random.Generator) -> None:
    """Replace one random-part base by N in ~N_ROW_FRACTION of the rows (sequencing calls)."""
    rows = np.flatnonzero(rng.random(len(random_part)) < N_ROW_FRACTION)
    offsets = (rng.random(len(random_part))[rows] * random_lengths[rows]).astype(int)
    random_part[rows, random_part.shape[1] - random_lengths[rows] + offsets] = N_CODE


def _right_aligned_rows(random_part: np.ndarray, random_lengths: np.ndarray) -> np.ndarray:
    """Codes [B, MAX_SEQ_LEN]: N padding, 5' flank, the last random_lengths bases, 3' flank."""
    num_rows = len(random_part)
    flank5 = encode([FLANK_5PRIME], seq_len=len(FLANK_5PRIME))[0]
    flank3 = encode([FLANK_3PRIME], seq_len=len(FLANK_3PRIME))[0]
    codes = np.full((num_rows, MAX_SEQ_LEN), N_CODE, dtype=np.uint8)
    random_end = MAX_SEQ_LEN - len(flank3)
    codes[:, random_end:] = flank3
    columns = np.arange(MAX_SEQ_LEN)
    random_start = random_end - random_lengths
    in_random = (columns >= random_start[:, None]) & (columns < random_end)
    codes[:, random_end - MAX_RANDOM_LENGTH:random_end] = np.where(
        in_random[:, random_end - MAX_RANDOM_LENGTH:random_end], random_part, N_CODE)
    flank_columns = random_start[:, None] - len(flank5) + np.arange(len(flank5))
    codes[np.arange(num_rows)[:, None], flank_columns] = flank5
    return codes


def _sample_block(seed: int, block_index: int) -> _Block:
    """Draw one block of BLOCK_ROWS rows from its own generator (reproducible in isolation)."""
    rng = _block_generator(seed, block_index)
    random_lengths = rng.choice(RANDOM_LENGTHS, size=BLOCK_ROWS, p=RANDOM_LENGTH_PROBS)
    random_part = rng.integers(0, 4, size=(BLOCK_ROWS, MAX_RANDOM_LENGTH), dtype=np.uint8)
    for _ in range(PLANT_ROUNDS):
        for motif in MOTIFS:
            _plant(random_part, random_lengths, motif, rng)
    _add_rare_n(random_part, random_lengths, rng)
    noise = NOISE_SD * np.clip(rng.standard_normal(BLOCK_ROWS), -NOISE_CLIP_SDS, NOISE_CLIP_SDS)
    singleton = rng.random(BLOCK_ROWS) < SINGLETON_FRACTION
    total_lengths = random_lengths + len(FLANK_5PRIME) + len(FLANK_3PRIME)
    return _Block(_right_aligned_rows(random_part, random_lengths), total_lengths, noise, singleton)


def measured_values(expression: np.ndarray, noise: np.ndarray,
                    singleton: np.ndarray) -> np.ndarray:
    """What the assay reports [n]: clip(expression + noise, 0, 17); singletons as whole bins."""
    values = np.clip(expression + noise, 0.0, EXPRESSION_MAX)
    return np.where(singleton, np.round(values), np.round(values, VALUE_DECIMALS))


def _strings(codes: np.ndarray, lengths: np.ndarray) -> list[str]:
    """The last lengths[i] letters of each right-aligned row, as str."""
    keep = np.arange(codes.shape[1]) >= (codes.shape[1] - lengths)[:, None]
    joined = _LETTER_BYTES[codes[keep]].tobytes().decode("ascii")
    ends = np.cumsum(lengths).tolist()
    return [joined[end - length:end] for end, length in zip(ends, lengths.tolist())]


def check_seed(seed: int) -> None:
    """Refuse a seed outside 0..MAX_SEED: a larger one would repeat another seed's rows."""
    if not 0 <= seed <= MAX_SEED:
        raise ConfigurationError(f"`seed` must be in 0..{MAX_SEED} (2**32 - 1), got {seed}: "
                                 "a larger seed would repeat another seed's rows")


def _generate_range(seed: int, start: int, stop: int) -> tuple[list[str], np.ndarray]:
    """Rows start..stop-1 of the endless sequence of rows for `seed`."""
    check_seed(seed)
    if stop <= start:
        return [], np.zeros(0)
    blocks = [_sample_block(seed, index)
              for index in range(start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS + 1)]
    offset = start - (start // BLOCK_ROWS) * BLOCK_ROWS
    rows = slice(offset, offset + stop - start)
    codes = np.concatenate([block.codes for block in blocks])[rows]
    lengths = np.concatenate([block.lengths for block in blocks])[rows]
    noise = np.concatenate([block.noise for block in blocks])[rows]
    singleton = np.concatenate([block.singleton for block in blocks])[rows]
    values = measured_values(expression_of_codes(codes), noise, singleton)
    return _strings(codes, lengths), values


def generate(num_rows: int, seed: int) -> tuple[list[str], np.ndarray]:
    """`num_rows` synthetic rows for `seed`: (sequences, measured expression [num_rows] float64)."""
    if num_rows < 0:
        raise ValueError(f"num_rows must be non-negative, got {num_rows}")
    return _generate_range(seed, 0, num_rows)


# ----------------------------------------------------------------------------- the file
def format_rows(sequences: list[str], values: np.ndarray) -> str:
    """DREAM text: `sequence<TAB>value` lines; whole values as integers ('12') as in the real
    file, others as the shortest repr that reads back to the same float."""
    texts = [str(int(value)) if value.is_integer() else repr(value) for value in values.tolist()]
    return "".join(f"{sequence}\t{text}\n" for sequence, text in zip(sequences, texts))


def write_dream_file(path, num_rows: int, seed: int, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                     overwrite: bool = False, show_progress: bool = False) -> int:
    """Write `num_rows` rows to `path` (gzipped when it ends in .gz), chunk by chunk.

    Memory stays bounded by chunk_rows (~1 KB per row); the bytes do not depend on it.
    Creates parent directories. Raises FileExistsError unless `overwrite`. With
    `show_progress`, files of PROGRESS_MIN_ROWS rows or more get a progress line on stderr.
    Returns the number of rows written.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    if num_rows < 0:
        raise ValueError(f"num_rows must be non-negative, got {num_rows}")
    check_seed(seed)  # before the file is touched
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise OutputExistsError(f"{path} exists (pass `overwrite=True` to replace it)")
    # Write beside the target and rename at the end (atomic_files): an interrupted run
    # leaves no half-written file that a later run would refuse to overwrite or a reader
    # would trust.
    started = time.monotonic()
    # Level 1: random DNA barely compresses better at higher levels, which are ~10x slower.
    with atomic_files.replacing_open(path, "wb", compresslevel=1) as stream:
        for start in range(0, num_rows, chunk_rows):
            stop = min(num_rows, start + chunk_rows)
            stream.write(format_rows(*_generate_range(seed, start, stop)).encode("ascii"))
            if show_progress and num_rows >= PROGRESS_MIN_ROWS:
                _report_progress(stop, num_rows, started)
    return num_rows


def _report_progress(done: int, total: int, started: float) -> None:
    """One line on stderr, rewritten in place after every chunk."""
    elapsed = max(time.monotonic() - started, 1e-9)
    sys.stderr.write(f"\rwrote {done:,}/{total:,} rows ({done / elapsed:,.0f} rows/s)")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()
